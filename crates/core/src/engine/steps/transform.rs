//! TRANSFORM: `{mapping}`, an object whose templates read the run context; the
//! rendered mapping is the step's output (`{"total": "{{ input.price * input.qty }}"}`).

use serde_json::Value;

use super::{StepInput, StepKind, StepResult};

pub struct Transform;

impl StepKind for Transform {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        StepResult::Done(input.config.get("mapping").cloned().unwrap_or(Value::Null))
    }
}
