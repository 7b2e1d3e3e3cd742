//! Mutation payloads: the changed object(s) and the input's problems.

/// Declares a payload type: optional result fields and `userErrors`.
macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(async_graphql::SimpleObject, Default)]
        pub struct $name {
            $(pub $field: Option<$ty>,)+
            /// Problems with the input; when non-empty nothing was changed.
            pub user_errors: Vec<crate::error::UserError>,
        }
    };
}
