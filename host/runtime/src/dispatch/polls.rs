//! State requests (`get`), the poll schedule with its backoff, and what device workers report
//! back: a device started, a state read, a poll finished.

use std::time::Duration;

use iot2mqtt_contract::codes::{ErrorCode, Severity};
use iot2mqtt_contract::command::GetRequest;
use iot2mqtt_contract::message::{Object, RetryInfo};
use iot2mqtt_engine::{DeviceInfo, Failure};
use tokio::time::Instant;

use crate::worker::{Applied, Job, ReadPurpose, WorkerEvent};

use super::*;

impl Dispatcher {
    pub(super) fn device_get(&mut self, device: &str, payload: &[u8]) {
        let request = match GetRequest::parse(payload) {
            Ok(request) => request,
            Err(error) => {
                return self.reporter.device_error(
                    device,
                    ErrorCode::InvalidPayload.as_str(),
                    &error.reason,
                    Severity::Warning,
                    None,
                );
            }
        };
        let worker = match self.devices.get(device) {
            Some(_) => self.worker_of(device),
            None => {
                let message = format!("the instance has no device \"{device}\"");
                return self.reporter.device_error(
                    device,
                    ErrorCode::UnknownDevice.as_str(),
                    &message,
                    Severity::Warning,
                    None,
                );
            }
        };
        let Some(worker) = worker else {
            let message = format!("the device \"{device}\" is disabled");
            return self.reporter.device_error(
                device,
                ErrorCode::DeviceDisabled.as_str(),
                &message,
                Severity::Warning,
                None,
            );
        };
        let purpose = ReadPurpose::Get { properties: request.properties };
        if worker.send(Job::Read { device: device.to_string(), purpose }).is_err() {
            let message = format!("too many requests are waiting for \"{device}\"");
            self.reporter.device_error(device, ErrorCode::DeviceBusy.as_str(), &message, Severity::Warning, None);
        }
    }

    pub(super) fn schedule_poll(&mut self, device: &str, at: Instant) {
        let Some(d) = self.devices.get_mut(device) else { return };
        if let Some(old) = d.poll_due.take() {
            self.polls.remove(&(old, device.to_string()));
        }
        d.poll_due = Some(at);
        self.polls.insert((at, device.to_string()));
    }

    pub(super) fn timers(&mut self) {
        let now = Instant::now();
        while let Some((at, token)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, token));
            let failure = Failure {
                code: ErrorCode::Timeout.into(),
                message: "the device did not finish the command in time".into(),
            };
            self.finish_command(token, Err(failure));
        }
        while let Some((at, device)) = self.polls.first().cloned() {
            if at > now {
                break;
            }
            self.polls.remove(&(at, device.clone()));
            let Some(d) = self.devices.get_mut(&device) else { continue };
            d.poll_due = None;
            if d.polling {
                continue;
            }
            let worker = d.worker.and_then(|number| self.workers.get(&number));
            if let Some(worker) = worker
                && worker.send(Job::Read { device: device.clone(), purpose: ReadPurpose::Poll }).is_ok()
            {
                d.polling = true;
            } else {
                let interval = Duration::from_secs(self.config.update_interval);
                self.schedule_poll(&device, now + interval);
            }
        }
    }

    pub(super) fn worker_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Started { device, outcome } => self.device_started(&device, outcome),
            WorkerEvent::Read { device, purpose, outcome } => self.device_read(&device, purpose, outcome),
            WorkerEvent::Applied { device, token, outcome } => match outcome {
                Some(Applied { result, state }) => {
                    self.finish_command(token, result);
                    if let Some(state) = state {
                        self.reporter.state(&device, state);
                        self.refresh_devices_list(&device);
                    }
                }
                None => tracing::debug!(%device, token, "a command expired before its device got to it"),
            },
            WorkerEvent::Fault { devices, fault } => {
                let devices = match devices.as_slice() {
                    [one] => format!("device \"{one}\""),
                    all => format!("the {} devices of the shared lane", all.len()),
                };
                tracing::error!(instance = %self.config.instance_id, %devices, kind = ?fault.kind, "plugin fault: {}", fault.message);
                let message = format!("{devices}: {}", fault.message);
                self.reporter.instance_error(ErrorCode::PluginFault.as_str(), &message, Severity::Error);
                self.status.send_modify(|s| s.record_fault(std::time::Instant::now(), message));
            }
            WorkerEvent::Switched { device, pause } => {
                tracing::debug!(%device, ?pause, "device switched to the new plugin");
                self.status.send_modify(|s| {
                    s.last_swap_pause = s.last_swap_pause.max(pause);
                    s.switched += 1;
                });
                self.switching = self.switching.saturating_sub(1);
                if self.switching == 0 {
                    let (devices, pause) = {
                        let status = self.status.borrow();
                        (status.switched, status.last_swap_pause)
                    };
                    let pause_ms = pause.as_secs_f64() * 1000.0;
                    self.last_swap = Some(iot2mqtt_contract::message::LastSwap { devices, pause_ms });
                    self.publish_info();
                }
            }
        }
    }

    pub(super) fn device_started(&mut self, device: &str, outcome: Result<DeviceInfo, Failure>) {
        let was_starting = self.devices.get(device).is_some_and(|d| d.info.is_none());
        match outcome {
            Ok(info) => {
                let changed = self.devices.get(device).is_some_and(|d| d.info.as_ref() != Some(&info));
                if let Some(d) = self.devices.get_mut(device) {
                    d.info = Some(info);
                }
                if changed && self.ready {
                    self.publish_devices_list();
                    self.discovery_refresh(Some(device));
                    self.schedule_poll(device, Instant::now());
                }
            }
            Err(failure) => {
                tracing::warn!(%device, "device could not be started: {failure}");
                self.reporter.device_error(device, &failure.code, &failure.message, Severity::Error, None);
                self.reporter.unavailable(device);
                if let Some(d) = self.devices.get_mut(device) {
                    d.info.get_or_insert(DeviceInfo {
                        id: device.to_string(),
                        model: None,
                        poll: true,
                        description: None,
                    });
                }
            }
        }
        if was_starting {
            self.starting = self.starting.saturating_sub(1);
            if self.starting == 0 {
                self.announce();
            }
        }
    }

    pub(super) fn device_read(&mut self, device: &str, purpose: ReadPurpose, outcome: Result<Object, Failure>) {
        self.record_read(device, purpose, outcome);
        self.refresh_devices_list(device);
    }

    pub(super) fn record_read(&mut self, device: &str, purpose: ReadPurpose, outcome: Result<Object, Failure>) {
        let interval = Duration::from_secs(self.config.update_interval);
        let polled = self.devices.get(device).is_none_or(|d| d.info.as_ref().is_none_or(|i| i.poll));
        match outcome {
            Ok(state) => {
                if let ReadPurpose::Get { properties: Some(keys) } = &purpose {
                    self.reporter.state(device, state.clone());
                    self.reporter.partial_state(device, &state, keys);
                } else {
                    self.reporter.state(device, state);
                }
                if let Some(d) = self.devices.get_mut(device) {
                    d.failures.reset();
                }
                self.discovery_after_read(device);
                if purpose == ReadPurpose::Poll {
                    let next = self.next_regular_read(device, interval);
                    self.poll_finished(device, polled.then_some(next));
                }
            }
            Err(failure) => {
                self.reporter.unavailable(device);
                let Some(d) = self.devices.get_mut(device) else { return };
                let delay = d.failures.fail();
                let attempt = d.failures.failures();
                let next_retry = time::OffsetDateTime::now_utc() + delay;
                let retry =
                    RetryInfo { attempt, max_attempts: None, next_retry: iot2mqtt_contract::time::format(next_retry) };
                let message = format!("{}: {}", failure.code, failure.message);
                self.reporter.device_error(
                    device,
                    ErrorCode::UpdateError.as_str(),
                    &message,
                    Severity::Warning,
                    Some(retry),
                );
                if purpose == ReadPurpose::Poll {
                    self.poll_finished(device, Some(Instant::now() + delay));
                }
            }
        }
    }

    /// When a device read just now is read again: at its phase of the interval, at least half
    /// an interval from now. The grid does not drift with the time reads take, and a burst of
    /// devices read together (at start, after an outage) spreads out by the next round.
    fn next_regular_read(&self, device: &str, interval: Duration) -> Instant {
        let now = Instant::now();
        let phase = self.devices.get(device).map_or(Duration::ZERO, |d| d.phase);
        let earliest = now + interval / 2;
        let from_epoch = earliest.saturating_duration_since(self.epoch + phase);
        let rounds = from_epoch.as_nanos().div_ceil(interval.as_nanos().max(1));
        self.epoch + phase + interval * u32::try_from(rounds).unwrap_or(u32::MAX)
    }

    pub(super) fn poll_finished(&mut self, device: &str, next: Option<Instant>) {
        if let Some(d) = self.devices.get_mut(device) {
            d.polling = false;
        }
        if let Some(at) = next {
            self.schedule_poll(device, at);
        }
    }
}
