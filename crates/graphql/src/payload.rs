//! Mutation payloads: the changed object(s) and the input's problems; and the `JSON`
//! scalar that inputs, payloads and objects carry.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::{MetaType, MetaTypeId, Registry};
use async_graphql::{
    ContextSelectionSet, InputType, InputValueResult, OutputType, Positioned, ServerResult, Value,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Declares a payload type: optional result fields and `userErrors`.
macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(async_graphql::SimpleObject, Default)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: Option<$ty>,)+
            /// Problems with the input; when non-empty nothing was changed.
            pub user_errors: Vec<crate::error::UserError>,
        }
    };
}

/// An optional JSON input's value: `{}` when it was omitted or null. Such inputs have
/// no default in the schema: graphql-js cannot print an object default of a custom
/// scalar (`astFromValue` throws), which broke GraphiQL's editor worker, and a default
/// printed as a string (async-graphql's `Json`) was stored as a string when sent back.
pub fn json_or_empty(value: Option<Json<serde_json::Value>>) -> serde_json::Value {
    value.map_or_else(|| serde_json::json!({}), |json| json.0)
}

/// The description of the `JSON` scalar.
pub const JSON_DESCRIPTION: &str = "Any JSON value: an object, array, string, number, \
    boolean or null. Send it as a GraphQL value (an object literal or a variable), not as \
    JSON text in a string: a string is taken as a JSON string.";

/// The `JSON` scalar. Unlike `async_graphql::Json`, whose `to_value` is the JSON text
/// as a GraphQL string, its GraphQL value is the JSON value itself: a default of
/// `Json(json!({}))` prints as `= {}` in the SDL and as `"{}"` in introspection's
/// `defaultValue`, which a client can send back as it is. Parsing and output are
/// async-graphql's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    fn meta_type() -> MetaType {
        MetaType::Scalar {
            name: "JSON".to_owned(),
            description: Some(JSON_DESCRIPTION.to_owned()),
            is_valid: None,
            visible: None,
            inaccessible: false,
            tags: vec![],
            specified_by_url: None,
            directive_invocations: vec![],
            requires_scopes: vec![],
        }
    }
}

impl<T: DeserializeOwned + Serialize + Send + Sync> InputType for Json<T> {
    type RawValueType = T;

    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("JSON")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_input_type::<Self, _>(MetaTypeId::Scalar, |_| Self::meta_type())
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        Ok(Self(async_graphql::from_value(value.unwrap_or_default())?))
    }

    fn to_value(&self) -> Value {
        async_graphql::to_value(&self.0).unwrap_or_default()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }
}

impl<T: Serialize + Send + Sync> OutputType for Json<T> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("JSON")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_output_type::<Self, _>(MetaTypeId::Scalar, |_| Self::meta_type())
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(async_graphql::to_value(&self.0).unwrap_or_default())
    }
}
