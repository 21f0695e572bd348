//! What the console reads and keeps beyond the send path: the test devices app
//! developers register for test messages, and the facts the per-role integration
//! checklist is ticked from (read from what the other concerns already store).

use async_trait::async_trait;

use crate::Result;

/// Most test devices one app may have (a registration past it is refused).
pub const MAX_TEST_DEVICES_PER_APP: usize = 100;

/// A push token an app's developers registered to receive test messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDevice {
    /// Herald's id for the registration (what `DELETE …/test-devices/{id}` names).
    pub id: String,
    pub project_id: String,
    pub client_id: String,
    /// The device's push token for the app.
    pub token: String,
    /// What the developer called it ("Pixel in the lab").
    pub name: String,
    /// Who registered it.
    pub added_by: String,
    pub created_at: i64,
}

/// What became of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDeviceAdded {
    Added(TestDevice),
    /// The token was already a test device of the app: that registration, unchanged.
    Exists(TestDevice),
    /// The app has [`MAX_TEST_DEVICES_PER_APP`] already.
    Full,
}

/// When each step of a project's integration first happened (`None`: not yet), in ms.
/// Times read from hourly report counters are the start of that hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecklistFacts {
    pub project_created_at: Option<i64>,
    /// A scenario right of one of its apps was requested, confirmed, granted.
    pub right_requested_at: Option<i64>,
    pub right_confirmed_at: Option<i64>,
    pub right_granted_at: Option<i64>,
    pub key_created_at: Option<i64>,
    pub receipt_configured_at: Option<i64>,
    /// A receipt callback was answered with success.
    pub receipt_answered_at: Option<i64>,
    /// A device got a push token for one of its apps.
    pub token_at: Option<i64>,
    pub test_device_at: Option<i64>,
    /// A message was queued for a token (counted, hourly).
    pub sent_at: Option<i64>,
    /// A device showed a message (hourly).
    pub shown_at: Option<i64>,
    /// A user tapped one (hourly).
    pub clicked_at: Option<i64>,
}

/// Test devices and the checklist's facts.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Register a test device (at most [`MAX_TEST_DEVICES_PER_APP`] per app).
    async fn add_test_device(&self, device: TestDevice) -> Result<TestDeviceAdded>;
    /// The app's test devices, oldest first.
    async fn test_devices(&self, client_id: &str) -> Result<Vec<TestDevice>>;
    /// Remove one; `false` when the app has no test device with that id.
    async fn remove_test_device(&self, client_id: &str, id: &str) -> Result<bool>;
    /// When each integration step of the project first happened.
    async fn checklist_facts(&self, project_id: &str) -> Result<ChecklistFacts>;
}
