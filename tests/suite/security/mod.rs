//! The findings of security reviews, one test each, so the next reviewer starts from them.
//! See `SECURITY.md` for the threat model these tests hold the product to.

mod cache;
mod login;
mod requests;
mod sandbox;
mod secrets;
mod tools;
