//! How a run moves through its version's graph: which steps are ready, which are
//! skipped, and when the run is over. Pure: the executor feeds it the graph, each
//! step's state and the run context, and carries out the plan in the tenant's
//! transaction.
//!
//! The rules (docs/engine.md):
//! - The entry step (the one without incoming transitions) runs first.
//! - When a step succeeds, its outgoing transitions are taken in order: every one
//!   without a condition (parallel branches); of those with a condition, the first that
//!   holds; and the default when no condition held.
//! - A step runs once every step before it has settled and at least one transition
//!   into it was taken (so parallel branches join); when none was taken it is SKIPPED,
//!   and the skip flows on down its branch.
//! - The run fails as soon as a step fails for good; it succeeds when every step has
//!   succeeded or been skipped.

use serde_json::Value;
use trellis_entity::StepRunStatus;

use super::condition::{self, Scope};

/// A step as routing sees it.
#[derive(Clone, Debug)]
pub struct Step {
    pub key: String,
}

/// A transition between steps (by position), in the version's order.
#[derive(Clone, Debug)]
pub struct Transition {
    pub from: usize,
    pub to: usize,
    pub condition: Option<Value>,
    pub is_default: bool,
}

/// A version's graph: steps, and transitions in evaluation order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub steps: Vec<Step>,
    pub transitions: Vec<Transition>,
}

/// Whether a step's status is final for routing: it succeeded or was skipped (a
/// running or waiting step is not; a failed one ends the run).
fn settled(status: StepRunStatus) -> bool {
    matches!(status, StepRunStatus::Succeeded | StepRunStatus::Skipped)
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// What to do next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps to start now, by position.
    pub ready: Vec<usize>,
    /// Steps that will never run (no transition into them was taken).
    pub skip: Vec<usize>,
    /// Set when the run is over.
    pub outcome: Option<Outcome>,
}

impl Graph {
    /// The transitions out of `step` that its success takes, given the run context
    /// and the step's own output (for bare condition fields).
    pub fn taken_from(&self, step: usize, context: &Value, output: Option<&Value>) -> Vec<usize> {
        let scope = Scope {
            context,
            step_output: output,
        };
        let mut taken = Vec::new();
        let mut condition_held = false;
        let mut default = None;
        for (i, t) in self.transitions.iter().enumerate() {
            if t.from != step {
                continue;
            }
            match (&t.condition, t.is_default) {
                (_, true) => default = default.or(Some(i)),
                (None, false) => taken.push(i),
                (Some(c), false) => {
                    if !condition_held && condition::holds(c, &scope) {
                        condition_held = true;
                        taken.push(i);
                    }
                }
            }
        }
        if let (false, Some(d)) = (condition_held, default) {
            taken.push(d);
        }
        taken.sort_unstable();
        taken
    }

    /// The next moves of a run whose steps stand at `states`. `outputs[i]` is step
    /// `i`'s output once it succeeded; `context` is the run context.
    pub fn plan(
        &self,
        states: &[StepRunStatus],
        outputs: &[Option<Value>],
        context: &Value,
    ) -> Plan {
        let n = self.steps.len();
        let mut plan = Plan::default();
        if states.contains(&StepRunStatus::Failed) {
            plan.outcome = Some(Outcome::Failed);
            return plan;
        }
        // Which transitions were taken, from the steps that succeeded.
        let mut taken = vec![false; self.transitions.len()];
        for (step, state) in states.iter().enumerate() {
            if *state == StepRunStatus::Succeeded {
                let output = outputs.get(step).and_then(Option::as_ref);
                for t in self.taken_from(step, context, output) {
                    taken[t] = true;
                }
            }
        }
        // Skips flow down a branch within one plan: settle steps in graph order until
        // nothing changes (the graph is acyclic, so this ends within n passes).
        let mut states = states.to_vec();
        loop {
            let mut changed = false;
            for step in 0..n {
                if states[step] != StepRunStatus::Pending || plan.ready.contains(&step) {
                    continue;
                }
                let incoming: Vec<usize> = (0..self.transitions.len())
                    .filter(|&t| self.transitions[t].to == step)
                    .collect();
                if incoming.is_empty() {
                    plan.ready.push(step);
                    continue;
                }
                if !incoming
                    .iter()
                    .all(|&t| settled(states[self.transitions[t].from]))
                {
                    continue;
                }
                if incoming.iter().any(|&t| taken[t]) {
                    plan.ready.push(step);
                } else {
                    states[step] = StepRunStatus::Skipped;
                    plan.skip.push(step);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if plan.ready.is_empty() && states.iter().all(|s| settled(*s)) {
            plan.outcome = Some(Outcome::Succeeded);
        }
        plan.ready.sort_unstable();
        plan.skip.sort_unstable();
        plan
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use StepRunStatus::*;

    /// `keys` in order; `edges` as (from, to, condition, default).
    fn graph(keys: &[&str], edges: &[(&str, &str, Option<Value>, bool)]) -> Graph {
        let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        Graph {
            steps: keys.iter().map(|k| Step { key: (*k).into() }).collect(),
            transitions: edges
                .iter()
                .map(|(f, t, c, d)| Transition {
                    from: at(f),
                    to: at(t),
                    condition: c.clone(),
                    is_default: *d,
                })
                .collect(),
        }
    }

    fn big() -> Option<Value> {
        Some(json!({"field": "input.total", "operator": "gte", "value": 1000}))
    }

    /// fetch -> check; check -(big)-> approve; check -(default)-> notify; both -> done.
    fn branching() -> Graph {
        graph(
            &["fetch", "check", "approve", "notify", "done"],
            &[
                ("fetch", "check", None, false),
                ("check", "approve", big(), false),
                ("check", "notify", None, true),
                ("approve", "done", None, false),
                ("notify", "done", None, false),
            ],
        )
    }

    #[test]
    fn the_entry_runs_first_and_a_condition_picks_one_branch() {
        let g = branching();
        let small = json!({"input": {"total": 10}});
        let none = vec![None; 5];
        assert_eq!(g.plan(&[Pending; 5], &none, &small).ready, [0]);
        let after_fetch = [Succeeded, Pending, Pending, Pending, Pending];
        assert_eq!(g.plan(&after_fetch, &none, &small).ready, [1]);
        // A small order takes the default: approve is skipped, notify runs.
        let after_check = [Succeeded, Succeeded, Pending, Pending, Pending];
        let plan = g.plan(&after_check, &none, &small);
        assert_eq!((plan.ready, plan.skip), (vec![3], vec![2]));
        // A big one takes the condition: notify is skipped.
        let large = json!({"input": {"total": 5000}});
        let plan = g.plan(&after_check, &none, &large);
        assert_eq!((plan.ready, plan.skip), (vec![2], vec![3]));
        // The join runs after the branch that ran, once the other is skipped.
        let joined = [Succeeded, Succeeded, Skipped, Succeeded, Pending];
        assert_eq!(g.plan(&joined, &none, &small).ready, [4]);
        let done = [Succeeded, Succeeded, Skipped, Succeeded, Succeeded];
        assert_eq!(
            g.plan(&done, &none, &small).outcome,
            Some(Outcome::Succeeded)
        );
    }

    #[test]
    fn skips_flow_down_a_branch_and_a_failure_ends_the_run() {
        // a -(never)-> b -> c; a -(default)-> d
        let g = graph(
            &["a", "b", "c", "d"],
            &[
                (
                    "a",
                    "b",
                    Some(json!({"field": "input.x", "operator": "exists"})),
                    false,
                ),
                ("b", "c", None, false),
                ("a", "d", None, true),
            ],
        );
        let ctx = json!({"input": {}});
        let plan = g.plan(
            &[Succeeded, Pending, Pending, Pending],
            &[None, None, None, None],
            &ctx,
        );
        assert_eq!((plan.ready, plan.skip), (vec![3], vec![1, 2]));
        let failed = g.plan(
            &[Succeeded, Skipped, Skipped, Failed],
            &[None, None, None, None],
            &ctx,
        );
        assert_eq!(failed.outcome, Some(Outcome::Failed));
        assert!(failed.ready.is_empty());
    }

    #[test]
    fn parallel_branches_join_after_both() {
        // a -> b, a -> c, b -> d, c -> d
        let g = graph(
            &["a", "b", "c", "d"],
            &[
                ("a", "b", None, false),
                ("a", "c", None, false),
                ("b", "d", None, false),
                ("c", "d", None, false),
            ],
        );
        let ctx = json!({});
        let none = vec![None; 4];
        assert_eq!(
            g.plan(&[Succeeded, Pending, Pending, Pending], &none, &ctx)
                .ready,
            [1, 2]
        );
        assert!(g
            .plan(&[Succeeded, Succeeded, Running, Pending], &none, &ctx)
            .ready
            .is_empty());
        assert_eq!(
            g.plan(&[Succeeded, Succeeded, Succeeded, Pending], &none, &ctx)
                .ready,
            [3]
        );
    }

    #[test]
    fn conditions_are_evaluated_in_order_and_bare_fields_read_the_step_output() {
        // approve -(approved)-> yes; approve -(approved again)-> also; default -> no
        let approved = Some(json!({"field": "approved", "operator": "equals", "value": true}));
        let g = graph(
            &["approve", "yes", "also", "no"],
            &[
                ("approve", "yes", approved.clone(), false),
                ("approve", "also", approved, false),
                ("approve", "no", None, true),
            ],
        );
        let ctx = json!({});
        let outputs = vec![Some(json!({"approved": true})), None, None, None];
        let plan = g.plan(&[Succeeded, Pending, Pending, Pending], &outputs, &ctx);
        // Only the first condition that holds is taken.
        assert_eq!((plan.ready, plan.skip), (vec![1], vec![2, 3]));
        let outputs = vec![Some(json!({"approved": false})), None, None, None];
        let plan = g.plan(&[Succeeded, Pending, Pending, Pending], &outputs, &ctx);
        assert_eq!((plan.ready, plan.skip), (vec![3], vec![1, 2]));
    }
}
