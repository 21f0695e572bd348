//! Which receipt configuration a receipt goes to: one rule for every engine, decided in
//! memory from the list of configurations (no query per receipt).

use std::sync::Arc;

/// What the choice needs of one configuration.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub receipt_id: Arc<str>,
    pub project_id: Arc<str>,
    pub client_id: Option<Arc<str>>,
}

/// Every configuration's place in the choice, oldest first.
#[derive(Debug, Default, Clone)]
pub struct ConfigIndex {
    /// Oldest first.
    configs: Vec<ConfigEntry>,
}

impl ConfigIndex {
    /// The index of `configs` given as (receipt_id, project_id, client_id), oldest first.
    pub fn new(configs: Vec<ConfigEntry>) -> ConfigIndex {
        ConfigIndex { configs }
    }

    /// The configuration a receipt goes to: the request's `receiptId` when it names a
    /// configuration of the request's project that is not another app's; else the oldest
    /// of the token's app; else the oldest project-level one. `None`: no receipt.
    pub fn choose(
        &self,
        receipt_id: Option<&str>,
        project_id: &str,
        client_id: Option<&str>,
    ) -> Option<Arc<str>> {
        if self.configs.is_empty() {
            return None;
        }
        let named = receipt_id.and_then(|id| {
            self.configs.iter().find(|c| {
                &*c.receipt_id == id
                    && &*c.project_id == project_id
                    && c.client_id.as_deref().is_none_or(|a| Some(a) == client_id)
            })
        });
        let of_app = || {
            client_id.and_then(|client| {
                self.configs
                    .iter()
                    .find(|c| c.client_id.as_deref() == Some(client))
            })
        };
        let of_project = || {
            self.configs
                .iter()
                .find(|c| &*c.project_id == project_id && c.client_id.is_none())
        };
        named
            .or_else(of_app)
            .or_else(of_project)
            .map(|c| c.receipt_id.clone())
    }
}
