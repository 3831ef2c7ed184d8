//! One bulb: its connection (kept open, so its notifications arrive), request ids, and what it
//! last said about itself. A lost connection is reopened, with growing pauses while the bulb
//! stays away.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iot2mqtt_sdk::net::{LineConnection, NetError};
use iot2mqtt_sdk::{Error, Object, Value, host};

use crate::protocol::{self, Identity, Incoming, Props};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the bulb may take to answer a request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest pause between reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// A bulb and its connection.
#[derive(Debug)]
pub struct Bulb {
    pub id: String,
    pub addr: SocketAddr,
    pub identity: Identity,
    pub props: Props,
    connection: Option<LineConnection>,
    next_id: u64,
    failures: u32,
    retry_at: Option<Instant>,
    /// Whether the last state pushed said online.
    pub online: bool,
}

impl Bulb {
    pub fn new(id: String, addr: SocketAddr, identity: Identity) -> Self {
        Self {
            id,
            addr,
            identity,
            props: Props::default(),
            connection: None,
            next_id: 0,
            failures: 0,
            retry_at: None,
            online: false,
        }
    }

    /// The state to publish.
    pub fn state(&self) -> Object {
        protocol::state(&self.props, &self.identity)
    }

    /// Whether a connection is open.
    pub fn connected(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// When the next reconnection attempt is due (now when none is pending).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Open the connection if it is not, now (commands and reads do not wait for the pause).
    pub fn connect(&mut self) -> Result<(), Error> {
        if self.connected() {
            return Ok(());
        }
        self.connection = None;
        match LineConnection::connect(self.addr, CONNECT_TIMEOUT) {
            Ok(connection) => {
                self.connection = Some(connection);
                self.failures = 0;
                self.retry_at = None;
                host::info(format!("connected to {} at {}", self.id, self.addr));
                Ok(())
            }
            Err(e) => {
                self.failures += 1;
                let pause = Duration::from_secs(1 << self.failures.min(5)).min(MAX_RETRY);
                self.retry_at = Some(Instant::now() + pause);
                Err(unreachable(self.addr, &e))
            }
        }
    }

    /// Send a request and wait for its answer, taking in notifications meanwhile.
    pub fn call(&mut self, method: &str, params: &[Value]) -> Result<Vec<Value>, Error> {
        self.connect()?;
        self.next_id += 1;
        let id = self.next_id;
        let addr = self.addr;
        let Some(connection) = self.connection.as_mut() else { return Err(unreachable(addr, &NetError::Closed)) };
        if let Err(e) = connection.send_line(&protocol::request(id, method, params)) {
            self.connection = None;
            return Err(unreachable(addr, &e));
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.connection.as_mut().map(|c| c.next_line(left)) {
                Some(Ok(Some(line))) => line,
                Some(Ok(None)) => {
                    self.connection = None;
                    return Err(Error::unreachable(format!("the bulb at {addr} did not answer {method} in time")));
                }
                Some(Err(e)) => {
                    self.connection = None;
                    return Err(unreachable(addr, &e));
                }
                None => return Err(unreachable(addr, &NetError::Closed)),
            };
            match protocol::parse(&line) {
                Incoming::Reply { id: got, result } if got == id => {
                    return result.map_err(|message| Error::failed(format!("the bulb refused {method}: {message}")));
                }
                Incoming::Props(changed) => self.props.merge(&changed),
                _ => {}
            }
        }
    }

    /// Read every property.
    pub fn refresh(&mut self) -> Result<(), Error> {
        let names: Vec<Value> = protocol::PROPS.iter().map(|p| Value::from(*p)).collect();
        let values = self.call("get_prop", &names)?;
        self.props = Props::from_get_prop(&values);
        Ok(())
    }

    /// Take in whatever arrived (notifications); whether anything changed. An error means the
    /// connection is gone.
    pub fn drain(&mut self) -> Result<bool, Error> {
        let addr = self.addr;
        let Some(connection) = self.connection.as_mut() else { return Ok(false) };
        let lines = match connection.ready_lines() {
            Ok(lines) => lines,
            Err(e) => {
                self.connection = None;
                return Err(unreachable(addr, &e));
            }
        };
        let mut changed = false;
        for line in lines {
            if let Incoming::Props(props) = protocol::parse(&line) {
                self.props.merge(&props);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// A pollable for the connection's incoming data.
    pub fn readable(&self) -> Option<iot2mqtt_sdk::wasip2::io::poll::Pollable> {
        self.connection.as_ref().map(LineConnection::readable)
    }
}

fn unreachable(addr: SocketAddr, e: &NetError) -> Error {
    Error::unreachable(format!("cannot reach the bulb at {addr}: {e}"))
}
