//! What a right's record holds after an action, shared by both engines: the request's
//! scenario stays until the next request; a confirmation is recorded once per request.

use herald_core::rights::RightAction;

use crate::RightChange;

/// The stored fields of a right before the action.
#[derive(Debug, Default)]
pub(crate) struct PreviousRight {
    pub reason: Option<String>,
    pub scenario: Option<String>,
    pub sample_message: Option<String>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<i64>,
}

/// The stored fields after `change` (whose state move was already checked), or why the
/// change is refused (a second confirmation of the same request).
pub(crate) fn next_right(
    change: &RightChange,
    before: Option<PreviousRight>,
) -> Result<PreviousRight, String> {
    let before = before.unwrap_or_default();
    // The scenario given with the request stays the right's reason unless the new action
    // gives its own.
    let reason = change.reason.clone().or(before.reason);
    Ok(match change.action {
        RightAction::Request => PreviousRight {
            reason: change.reason.clone().or(change.scenario.clone()).or(reason),
            scenario: change.scenario.clone(),
            sample_message: change.sample_message.clone(),
            confirmed_by: None,
            confirmed_at: None,
        },
        RightAction::Confirm => {
            if let Some(by) = before.confirmed_by {
                return Err(format!("the scenario is already confirmed by {by}"));
            }
            PreviousRight {
                reason,
                scenario: before.scenario,
                sample_message: before.sample_message,
                confirmed_by: Some(change.actor.clone()),
                confirmed_at: Some(change.at),
            }
        }
        RightAction::Grant | RightAction::Refuse | RightAction::Revoke => PreviousRight {
            reason,
            scenario: before.scenario,
            sample_message: before.sample_message,
            confirmed_by: before.confirmed_by,
            confirmed_at: before.confirmed_at,
        },
    })
}
