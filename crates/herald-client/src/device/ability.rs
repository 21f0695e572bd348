//! Tap handling as on HarmonyOS: the `Want` an ability receives, the `Ability` trait the
//! app implements, the abilities' declared skills, and the routing of a `clickAction` to
//! one of them (reference §2.4.1, §7.4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The home (entry) ability every app has unless it declares its own.
pub const DEFAULT_HOME_ABILITY: &str = "EntryAbility";

/// What an ability is started with. `parameters` are `clickAction.data`, flattened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Want {
    pub parameters: Map<String, Value>,
    pub action: Option<String>,
    pub uri: Option<String>,
}

/// A UIAbility of the app. Called on the thread that handled the tap; keep it quick.
pub trait Ability: Send + Sync {
    /// Cold start: the ability did not exist (the app was not running, or this ability
    /// had not been started since it was).
    fn on_create(&self, want: &Want);
    /// Warm start of a running singleton ability.
    fn on_new_want(&self, want: &Want);
}

/// An ability that does nothing (the default home ability; events still report the call).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopAbility;

impl Ability for NoopAbility {
    fn on_create(&self, _want: &Want) {}
    fn on_new_want(&self, _want: &Want) {}
}

/// An ability's `skills` as `module.json5` declares them: the `actions` and `uris` a
/// `clickAction` of type 1 may match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbilityDecl {
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub uris: Vec<String>,
}

impl AbilityDecl {
    pub fn new(name: impl Into<String>) -> Self {
        AbilityDecl {
            name: name.into(),
            ..AbilityDecl::default()
        }
    }

    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.actions.push(action.into());
        self
    }

    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uris.push(uri.into());
        self
    }
}

/// Which lifecycle callback a tap triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbilityCallback {
    #[serde(rename = "onCreate")]
    OnCreate,
    #[serde(rename = "onNewWant")]
    OnNewWant,
}

impl AbilityCallback {
    pub fn as_str(self) -> &'static str {
        match self {
            AbilityCallback::OnCreate => "onCreate",
            AbilityCallback::OnNewWant => "onNewWant",
        }
    }
}

/// Where a tap goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ClickRoute {
    /// Start `ability` with `want` (action types 0 and 1).
    Open { ability: String, want: Want },
    /// Action type 3: the notification is cleared, nothing opens.
    Clear,
    /// Action type 5: the dialer opens with `data.tel`; the app is not started.
    Dial { tel: Option<String> },
}

/// Routes a notification's `clickAction` (as the device received it) to an ability.
///
/// Type 0 opens `home`. Type 1 opens the first declared ability whose `actions` contain
/// `clickAction.action` (preferred), else whose `uris` contain `clickAction.uri`, else
/// `home`. `data` becomes `want.parameters` either way.
pub fn route_click(click_action: Option<&Value>, decls: &[AbilityDecl], home: &str) -> ClickRoute {
    let get_str = |key: &str| {
        click_action
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let action_type = click_action
        .and_then(|c| c.get("actionType"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let parameters = click_action
        .and_then(|c| c.get("data"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    match action_type {
        3 => return ClickRoute::Clear,
        5 => {
            return ClickRoute::Dial {
                tel: parameters
                    .get("tel")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
        }
        _ => {}
    }
    let (action, uri) = (get_str("action"), get_str("uri"));
    let ability = if action_type == 1 {
        let by_action = action
            .as_ref()
            .and_then(|a| decls.iter().find(|d| d.actions.contains(a)));
        let by_uri = || {
            uri.as_ref()
                .and_then(|u| decls.iter().find(|d| d.uris.iter().any(|x| same_uri(x, u))))
        };
        by_action
            .or_else(by_uri)
            .map_or_else(|| home.to_owned(), |d| d.name.clone())
    } else {
        home.to_owned()
    };
    ClickRoute::Open {
        ability,
        want: Want {
            parameters,
            action,
            uri,
        },
    }
}

/// URIs match when equal but for a trailing slash and the case of scheme and host.
fn same_uri(declared: &str, sent: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim_end_matches('/');
        match u.split_once("://") {
            Some((scheme, rest)) => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                format!(
                    "{}://{}/{}",
                    scheme.to_ascii_lowercase(),
                    host.to_ascii_lowercase(),
                    path
                )
            }
            None => u.to_owned(),
        }
    }
    norm(declared) == norm(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decls() -> Vec<AbilityDecl> {
        vec![
            AbilityDecl::new("OrderAbility").action("com.example.ORDER"),
            AbilityDecl::new("WebAbility").uri("https://www.example.com:8080/push/test"),
        ]
    }

    fn opened(route: ClickRoute) -> (String, Want) {
        match route {
            ClickRoute::Open { ability, want } => (ability, want),
            other => panic!("expected an ability, got {other:?}"),
        }
    }

    #[test]
    fn type_0_opens_home_with_data_as_parameters() {
        let ca = json!({"actionType": 0, "data": {"orderId": "42"}});
        let (ability, want) = opened(route_click(Some(&ca), &decls(), "Home"));
        assert_eq!(ability, "Home");
        assert_eq!(want.parameters["orderId"], "42");
    }

    #[test]
    fn type_1_prefers_action_then_uri_then_home() {
        let by_action = json!({"actionType": 1, "action": "com.example.ORDER",
            "uri": "https://www.example.com:8080/push/test"});
        assert_eq!(
            opened(route_click(Some(&by_action), &decls(), "Home")).0,
            "OrderAbility"
        );
        let by_uri = json!({"actionType": 1, "uri": "HTTPS://www.example.com:8080/push/test/"});
        assert_eq!(
            opened(route_click(Some(&by_uri), &decls(), "Home")).0,
            "WebAbility"
        );
        let none = json!({"actionType": 1, "action": "com.example.NOPE"});
        let (ability, want) = opened(route_click(Some(&none), &decls(), "Home"));
        assert_eq!(ability, "Home");
        assert_eq!(want.action.as_deref(), Some("com.example.NOPE"));
    }

    #[test]
    fn types_3_and_5_open_no_ability() {
        assert_eq!(
            route_click(Some(&json!({"actionType": 3})), &decls(), "Home"),
            ClickRoute::Clear
        );
        assert_eq!(
            route_click(
                Some(&json!({"actionType": 5, "data": {"tel": "+123"}})),
                &decls(),
                "Home"
            ),
            ClickRoute::Dial {
                tel: Some("+123".into())
            }
        );
    }
}
