//! The run and step-run state machines. An illegal move is CONFLICT.

use trellis_entity::{RunStatus, StepRunStatus};

use crate::{Error, Result};

/// Whether a run may move from `from` to `to`.
pub fn run_can_move(from: RunStatus, to: RunStatus) -> bool {
    use RunStatus::{Cancelled, Failed, Pending, Running, Succeeded};
    matches!(
        (from, to),
        (Pending, Running)
            | (Pending, Cancelled)
            | (Running, Succeeded)
            | (Running, Failed)
            | (Running, Cancelled)
    )
}

/// Whether a step run may move from `from` to `to`.
pub fn step_can_move(from: StepRunStatus, to: StepRunStatus) -> bool {
    use StepRunStatus::{Cancelled, Failed, Pending, Running, Skipped, Succeeded, Waiting};
    matches!(
        (from, to),
        (Pending, Running)
            | (Pending, Skipped)
            | (Pending, Cancelled)
            | (Running, Succeeded)
            | (Running, Failed)
            | (Running, Cancelled)
            | (Running, Waiting)
            | (Waiting, Succeeded)
            | (Waiting, Failed)
            | (Waiting, Cancelled)
    )
}

/// Whether a run has ended.
pub fn run_is_finished(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
    )
}

pub(crate) fn run_status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Pending => "pending",
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

pub(crate) fn step_status_name(status: StepRunStatus) -> &'static str {
    match status {
        StepRunStatus::Pending => "pending",
        StepRunStatus::Running => "running",
        StepRunStatus::Waiting => "waiting",
        StepRunStatus::Succeeded => "succeeded",
        StepRunStatus::Failed => "failed",
        StepRunStatus::Skipped => "skipped",
        StepRunStatus::Cancelled => "cancelled",
    }
}

/// CONFLICT for an illegal run move.
pub(crate) fn check_run_move(from: RunStatus, to: RunStatus) -> Result<()> {
    if run_can_move(from, to) {
        Ok(())
    } else {
        Err(Error::conflict(
            Some("status"),
            format!(
                "a {} run cannot become {}",
                run_status_name(from),
                run_status_name(to)
            ),
        ))
    }
}

/// CONFLICT for an illegal step-run move.
pub(crate) fn check_step_move(key: &str, from: StepRunStatus, to: StepRunStatus) -> Result<()> {
    if step_can_move(from, to) {
        Ok(())
    } else {
        Err(Error::conflict(
            Some("stepKey"),
            format!(
                "step {key:?} is {} and cannot become {}",
                step_status_name(from),
                step_status_name(to)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;

    #[test]
    fn runs_move_only_forward() {
        use RunStatus::*;
        let legal = [
            (Pending, Running),
            (Pending, Cancelled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
        ];
        for from in RunStatus::iter() {
            for to in RunStatus::iter() {
                assert_eq!(
                    run_can_move(from, to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
        for done in [Succeeded, Failed, Cancelled] {
            assert!(run_is_finished(done));
            assert!(RunStatus::iter().all(|to| !run_can_move(done, to)));
        }
    }

    #[test]
    fn steps_move_only_forward() {
        use StepRunStatus::*;
        assert!(step_can_move(Pending, Running));
        assert!(step_can_move(Pending, Skipped));
        assert!(step_can_move(Running, Failed));
        assert!(!step_can_move(Running, Skipped));
        assert!(step_can_move(Running, Waiting));
        assert!(step_can_move(Waiting, Succeeded));
        assert!(!step_can_move(Waiting, Running));
        assert!(!step_can_move(Pending, Waiting));
        assert!(!step_can_move(Succeeded, Running));
        assert!(!step_can_move(Failed, Succeeded));
        assert!(!step_can_move(Skipped, Running));
        assert!(StepRunStatus::iter().all(|to| !step_can_move(Cancelled, to)));
        assert!(check_step_move("a", Succeeded, Running).is_err());
    }
}
