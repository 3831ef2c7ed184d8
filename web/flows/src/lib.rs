//! Setup flows, the declarative onboarding of connectors: the `setup.json` format as strict
//! types ([`schema`]), the template language of its values ([`template`]), the conditions that
//! show and hide steps and fields ([`condition`]), form validation ([`form`]), and the engine
//! that walks a flow one step at a time ([`engine`]), rendering each step as a typed
//! [`StepView`].
//!
//! Pure logic: no I/O, no HTTP, no clock. The engine says when a tool must run or an instance
//! be created; the server does it and hands the outcome back, so any front end (the web UI, a
//! script, a CLI) walks the same flow.

pub mod condition;
pub mod engine;
pub mod form;
pub mod schema;
pub mod template;

pub use engine::{FlowError, FlowSession, Next, StepContent, StepPage, StepView, ToolFailure};
pub use schema::{Setup, SetupError};
