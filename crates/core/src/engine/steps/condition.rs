//! CONDITION: routes only. Its outgoing transitions' conditions pick the branch
//! (`engine::routing`); the step itself succeeds at once with an empty output.

use serde_json::json;

use super::{StepInput, StepKind, StepResult};

pub struct Condition;

impl StepKind for Condition {
    async fn execute(&self, _input: &StepInput<'_>) -> StepResult {
        StepResult::Done(json!({}))
    }
}
