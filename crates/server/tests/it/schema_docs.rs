//! Schema documentation for generated SDKs and the GraphiQL docs explorer: every type,
//! field, argument, input field and enum value the standard introspection query returns
//! has a description of its own, `DateTime` says which specification it follows, and no
//! JSON input has a default that a client would misread (a string) or cannot print (an
//! object, in graphql-js).

use serde_json::Value;

/// Types graphql-js and the GraphQL spec define; their descriptions are not ours.
const BUILT_IN: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// The introspection query an SDK generator sends, with everything it can ask for.
fn introspection_query() -> String {
    crate::limits::introspection_query(
        "{ descriptions: true, specifiedByUrl: true, inputValueDeprecation: true }",
    )
}

/// The schema's types as introspection returns them, built from the code.
async fn introspected_types() -> Vec<Value> {
    let schema = trellis_graphql::build_schema(None, &trellis_graphql::Limits::default());
    let response = schema.execute(introspection_query()).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().unwrap();
    data["__schema"]["types"].as_array().unwrap().clone()
}

fn described(item: &Value) -> bool {
    item["description"]
        .as_str()
        .is_some_and(|d| !d.trim().is_empty())
}

fn list<'a>(item: &'a Value, key: &str) -> &'a [Value] {
    item[key].as_array().map_or(&[], Vec::as_slice)
}

fn find<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn every_type_field_argument_and_enum_value_is_described() {
    let mut missing = vec![];
    for ty in introspected_types().await {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__") || BUILT_IN.contains(&name) {
            continue;
        }
        if !described(&ty) {
            missing.push(format!("type {name}"));
        }
        for field in list(&ty, "fields") {
            let field_name = field["name"].as_str().unwrap();
            if !described(field) {
                missing.push(format!("field {name}.{field_name}"));
            }
            for arg in list(field, "args") {
                if !described(arg) {
                    let arg = arg["name"].as_str().unwrap();
                    missing.push(format!("argument {name}.{field_name}({arg}:)"));
                }
            }
        }
        for field in list(&ty, "inputFields") {
            if !described(field) {
                missing.push(format!(
                    "input field {name}.{}",
                    field["name"].as_str().unwrap()
                ));
            }
        }
        for value in list(&ty, "enumValues") {
            if !described(value) {
                missing.push(format!(
                    "enum value {name}.{}",
                    value["name"].as_str().unwrap()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} schema items have no description (write a doc comment, or \
         #[graphql(desc = \"…\")] on an argument):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[tokio::test]
async fn date_time_names_its_specification_and_describes_itself() {
    let types = introspected_types().await;
    let date_time = find(&types, "DateTime");
    assert_eq!(
        date_time["specifiedByURL"],
        "https://datatracker.ietf.org/doc/html/rfc3339"
    );
    // async-graphql's own doc text of its chrono scalar is replaced by ours.
    let description = date_time["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("RFC 3339") && !description.contains("Implement the"),
        "DateTime has async-graphql's description {description:?}: build_schema overrides \
         it with SchemaBuilder::override_output_type_description"
    );
    let sdl = trellis_graphql::export_sdl();
    assert!(
        sdl.contains(
            "scalar DateTime @specifiedBy(url: \"https://datatracker.ietf.org/doc/html/rfc3339\")"
        ),
        "export_sdl does not print DateTime's @specifiedBy \
         (SDLExportOptions::include_specified_by)"
    );
}

#[tokio::test]
async fn json_inputs_have_no_default_that_clients_misread() {
    let types = introspected_types().await;
    let json = find(&types, "JSON");
    assert!(
        !json["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("A scalar that can represent"),
        "JSON keeps async-graphql's description: {json}"
    );
    // No JSON input has a default: a string default (async-graphql's own `Json`) is
    // stored as a string when a client sends it back, and graphql-js cannot print an
    // object default of a custom scalar (`astFromValue` throws), which broke GraphiQL's
    // editor worker. Omitted JSON inputs are `{}` on the server instead.
    let mut defaults = vec![];
    for ty in &types {
        for field in list(ty, "inputFields") {
            let of_json =
                field["type"]["ofType"]["name"] == "JSON" || field["type"]["name"] == "JSON";
            if of_json && !field["defaultValue"].is_null() {
                defaults.push(format!(
                    "{}.{} = {}",
                    ty["name"].as_str().unwrap(),
                    field["name"].as_str().unwrap(),
                    field["defaultValue"]
                ));
            }
        }
    }
    assert_eq!(defaults, Vec::<String>::new(), "JSON inputs with a default");
}
