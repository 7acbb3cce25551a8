//! Captures (pcap, pcapng) turned into scenarios.

use std::net::SocketAddr;
use std::path::Path;

use crate::scenario::Scenario;

/// Why a capture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading failed.
    #[error("{0}")]
    Read(String),
}

/// Build a scenario from the first SIP dialog of a capture.
pub fn scenario_from_capture(
    _path: &Path,
    _from: Option<SocketAddr>,
    _scale: f64,
) -> Result<Scenario, Error> {
    Err(Error::Read("capture replay is being built".into()))
}
