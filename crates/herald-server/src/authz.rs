//! The permission matrix: which role may do what in a project, in one place. The admin
//! API and the console ask [`allows`] (through `Principal::require` in `api/admin.rs`)
//! and nothing else; `docs/roles.md` is this table in prose, and `GET /api/v1/me` lists
//! [`Action::for_role`] per project.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A project member's role (one per member and project).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Operations,
    Product,
    BackendDeveloper,
    AppDeveloper,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Operations,
        Role::Product,
        Role::BackendDeveloper,
        Role::AppDeveloper,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Operations => "operations",
            Role::Product => "product",
            Role::BackendDeveloper => "backend_developer",
            Role::AppDeveloper => "app_developer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a user does in a project. The snake_case names are part of the API
/// (`GET /api/v1/me` lists them) and documented in `docs/roles.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read the push report, rights (with their history), app settings, quotas, keys
    /// (public parts) and receipt configurations (without secrets).
    Read,
    /// Request a scenario right, with scenario text and a sample message.
    RequestRight,
    /// Confirm that a requested right's scenario matches its category.
    ConfirmRight,
    /// Grant, refuse or revoke a right (the reviewer's part).
    DecideRight,
    /// App settings (category, limits), creating apps, push service on/off.
    ConfigureApp,
    /// Create and revoke service-account keys; create, delete and test receipt
    /// configurations.
    ManageCredentials,
    /// Register test devices and send test messages to them.
    SendTest,
    /// Add and remove members; read the audit log.
    ManageMembers,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::RequestRight,
        Action::ConfirmRight,
        Action::DecideRight,
        Action::ConfigureApp,
        Action::ManageCredentials,
        Action::SendTest,
        Action::ManageMembers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::RequestRight => "request_right",
            Action::ConfirmRight => "confirm_right",
            Action::DecideRight => "decide_right",
            Action::ConfigureApp => "configure_app",
            Action::ManageCredentials => "manage_credentials",
            Action::SendTest => "send_test",
            Action::ManageMembers => "manage_members",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// What the action is, for a refusal ("… may <what>").
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "read this project",
            Action::RequestRight => "request a scenario right",
            Action::ConfirmRight => "confirm a right's scenario",
            Action::DecideRight => "grant, refuse or revoke a right",
            Action::ConfigureApp => "change app settings or switch the push service",
            Action::ManageCredentials => "create or revoke keys and receipt configurations",
            Action::SendTest => "register test devices and send test messages",
            Action::ManageMembers => "manage members or read the audit log",
        }
    }

    /// The actions `role` may do, in [`Action::ALL`]'s order.
    pub fn for_role(role: Role) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| allows(role, *a))
            .collect()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The matrix (issue 16, `docs/roles.md`). The instance admin may do everything
/// everywhere and is not asked here; [`Action::DecideRight`] is theirs alone.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match action {
        Read => true,
        RequestRight => matches!(role, Owner | Operations),
        ConfirmRight => matches!(role, Owner | Product),
        DecideRight => false,
        ConfigureApp => matches!(role, Owner | Operations),
        ManageCredentials => matches!(role, Owner | BackendDeveloper),
        SendTest => matches!(role, Owner | BackendDeveloper | AppDeveloper),
        ManageMembers => matches!(role, Owner),
    }
}

/// The sentence a member whose role may not do `action` gets (HTTP 403): it names the
/// roles that may.
pub fn refusal(role: Role, action: Action) -> String {
    let mut who: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| allows(*r, action))
        .map(Role::as_str)
        .collect();
    who.push("the instance admin");
    let who = match who.as_slice() {
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        [] => String::new(),
    };
    format!(
        "your role in this project is {role}; only {who} may {}",
        action.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    #[test]
    fn refusals_name_who_can() {
        assert_eq!(
            refusal(Role::AppDeveloper, Action::ManageMembers),
            "your role in this project is app_developer; only owner or the instance admin may manage members or read the audit log"
        );
        assert!(
            refusal(Role::Owner, Action::DecideRight).contains("only the instance admin may grant")
        );
        assert!(
            refusal(Role::Product, Action::SendTest)
                .contains("owner, backend_developer, app_developer or the instance admin")
        );
    }
}
