//! DELAY: a durable timer, `{seconds}`. The step waits from when it started; meanwhile
//! the run holds no worker (its lease is released until the timer is due) and a
//! restart loses nothing, since the start time is stored.

use serde_json::json;

use super::{StepInput, StepKind, StepResult};

pub struct Delay;

impl StepKind for Delay {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        let seconds = input
            .config
            .get("seconds")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
            .clamp(0, 31_536_000);
        let until = input.started_at + chrono::Duration::seconds(seconds);
        if input.now >= until {
            StepResult::Done(json!({ "waitedSeconds": seconds }))
        } else {
            StepResult::Waiting { until }
        }
    }
}
