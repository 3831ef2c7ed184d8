//! Home Assistant discovery from the dispatcher's side: which devices there are, what they
//! said about themselves, and when that changes (see `crate::discovery` for the rules).

use crate::discovery::{DeviceFacts, Discovery};

use super::*;

impl Dispatcher {
    /// Announce the instance and every started device (when the instance is ready).
    pub(super) fn discovery_announce(&mut self) {
        let Some(mut discovery) = self.discovery.take() else { return };
        let name = self.config.friendly_name.clone().unwrap_or_else(|| self.config.instance_id.to_string());
        let instance = discovery.namer().instance(&name, &self.connector_type);
        discovery.sync(&self.reporter, None, vec![instance]);
        let ids: Vec<String> =
            self.devices.iter().filter(|(_, d)| d.worker.is_some()).map(|(id, _)| id.clone()).collect();
        for id in &ids {
            self.discovery_device(&mut discovery, id);
        }
        discovery.sweep(&self.reporter, |owner| self.discovery_current(owner));
        self.discovery = Some(discovery);
    }

    /// A device's description may have changed (a swap, a restarted worker).
    pub(super) fn discovery_refresh(&mut self, device: Option<&str>) {
        if !self.ready {
            return;
        }
        let Some(mut discovery) = self.discovery.take() else { return };
        let ids: Vec<String> = match device {
            Some(id) => vec![id.to_string()],
            None => self.devices.iter().filter(|(_, d)| d.worker.is_some()).map(|(id, _)| id.clone()).collect(),
        };
        for id in &ids {
            self.discovery_device(&mut discovery, id);
        }
        discovery.sweep(&self.reporter, |owner| self.discovery_current(owner));
        self.discovery = Some(discovery);
    }

    /// A device was read: one without a description gets sensors for its state's keys.
    pub(super) fn discovery_after_read(&mut self, device: &str) {
        let undescribed =
            self.devices.get(device).is_some_and(|d| d.info.as_ref().is_none_or(|i| i.description.is_none()));
        if !self.ready || !undescribed || self.discovery.as_ref().is_none_or(|d| !d.enabled()) {
            return;
        }
        let Some(state) = self.reporter.state_of(device) else { return };
        if self.discovery.as_mut().is_some_and(|d| d.fallback_changed(device, &state)) {
            self.discovery_refresh(Some(device));
        }
    }

    /// A message on a discovery topic: Home Assistant's status, or a config of this instance.
    pub(super) fn discovery_message(&mut self, topic: &str, payload: &[u8]) {
        let Some(mut discovery) = self.discovery.take() else { return };
        discovery.received(&self.reporter, topic, payload);
        discovery.sweep(&self.reporter, |owner| self.discovery_current(owner));
        self.discovery = Some(discovery);
    }

    /// After a reconnect: the broker may have lost retained messages.
    pub(super) fn discovery_republish(&self) {
        if let Some(discovery) = &self.discovery {
            discovery.republish(&self.reporter);
        }
    }

    fn discovery_device(&self, discovery: &mut Discovery, id: &str) {
        let Some(d) = self.devices.get(id) else { return };
        let description = d.info.as_ref().and_then(|i| i.description.as_ref());
        let state = if description.is_none() { self.reporter.state_of(id) } else { None };
        if description.is_none() {
            // Not read yet: its sensors are not known, and neither is what is stale of it.
            let Some(state) = &state else { return };
            discovery.fallback_changed(id, state);
        }
        let name = d.entry.extra.get("friendly_name").and_then(Value::as_str).unwrap_or(id);
        let facts = DeviceFacts {
            id,
            name,
            model: d.info.as_ref().and_then(|i| i.model.as_deref()),
            sw_version: &self.plugin.about().version,
            description,
            state: state.as_ref(),
        };
        let configs = discovery.namer().device(&facts);
        discovery.sync(&self.reporter, Some(id.to_string()), configs);
    }

    /// Whether `owner` still exists: the instance, or one of its enabled devices.
    fn discovery_current(&self, owner: &Option<String>) -> bool {
        owner.as_ref().is_none_or(|id| self.devices.get(id).is_some_and(|d| d.entry.enabled))
    }
}
