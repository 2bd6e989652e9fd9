//! Built without the `metrics` feature: every call is a no-op the compiler
//! removes.

use std::time::Duration;

use crate::events::Event;

/// No metric handles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics(());

impl Metrics {
    pub(crate) fn new(_client: &str) -> Self {
        Self(())
    }

    #[inline]
    pub(crate) fn event(&self, _event: &Event) {}

    #[inline]
    pub(crate) fn received(&self, _messages: u64, _bytes: u64) {}

    #[inline]
    pub(crate) fn sent(&self, _messages: u64, _bytes: u64) {}

    #[inline]
    pub(crate) fn wire_in(&self, _bytes: u64) {}

    #[inline]
    pub(crate) fn wire_out(&self, _bytes: u64) {}

    #[inline]
    pub(crate) fn refused(&self) {}

    #[inline]
    pub(crate) fn queue(&self, _messages: usize, _bytes: usize) {}

    #[inline]
    pub(crate) fn unconfirmed(&self, _messages: u64) {}

    #[inline]
    pub(crate) fn rtt(&self, _rtt: Duration) {}
}
