//! A command as a Raft entry carries it: shared, and encoded at most once.
//!
//! A leader writes each entry to its own log and sends it to both followers, and
//! each follower writes it to its log: bincode walked every record of the entry
//! five times across the cluster (about 5% of the nodes' CPU at 1 KiB max). The
//! encoding is now made once, on the leader, the first time it is needed (its log
//! write), and kept with the command: the Raft messages to the followers reuse
//! it, and a follower keeps the bytes it received for its own log write (see
//! [`crate::entry_codec`]). The bytes are the command's bincode, so the log and
//! the wire keep their layout. Once the entry is applied the bytes are let go,
//! so that caches of applied commands do not hold every record twice. (A
//! follower's records share the buffer of the message they came in, a copy of
//! its own: see [`crate::wire::RaftRequest::decode`].)

use std::ops::Deref;
use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::log_store::encode;

/// A [`Command`] and, while its entry is on its way to the logs, its bincode
/// encoding. serde sees only the command.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoggedCommand {
    command: Command,
    #[serde(skip)]
    encoded: Mutex<Encoding>,
    /// Made on this node (by its leader's proposal) rather than received from a
    /// leader or read back from the log.
    #[serde(skip)]
    proposed_here: bool,
}

/// Where a command's encoding stands.
#[derive(Default)]
enum Encoding {
    /// Not made yet: the first to need it makes and keeps it.
    #[default]
    Unmade,
    Kept(Bytes),
    /// The entry is applied: bytes made now (for a follower far behind) are not kept.
    Released,
}

impl LoggedCommand {
    /// A command this node proposes.
    pub fn new(command: Command) -> Self {
        LoggedCommand { command, encoded: Mutex::new(Encoding::Unmade), proposed_here: true }
    }

    /// A command decoded from `encoded` (its own bincode, as a follower received
    /// it or the log holds it).
    pub(crate) fn with_encoding(command: Command, encoded: Bytes) -> Self {
        LoggedCommand { command, encoded: Mutex::new(Encoding::Kept(encoded)), proposed_here: false }
    }

    /// Whether this node made the command, as its group's leader, rather than
    /// received it from another leader or read it back from its log.
    pub fn proposed_here(&self) -> bool {
        self.proposed_here
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Encoding> {
        self.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The command's bincode: the kept bytes, or made now (and kept until the
    /// entry is applied).
    pub fn encoded(&self) -> std::io::Result<Bytes> {
        let mut slot = self.slot();
        match &*slot {
            Encoding::Kept(bytes) => Ok(bytes.clone()),
            Encoding::Unmade => {
                let bytes = Bytes::from(encode(&self.command)?);
                *slot = Encoding::Kept(bytes.clone());
                Ok(bytes)
            }
            Encoding::Released => Ok(Bytes::from(encode(&self.command)?)),
        }
    }

    /// Lets the kept bytes go, for good: once the entry is applied, the logs have
    /// it and the command lives on only for readers, who need no second copy of
    /// its records. (A follower still behind then gets bytes made again.)
    pub fn forget_encoding(&self) {
        *self.slot() = Encoding::Released;
    }

    /// Whether the encoding is kept now.
    #[cfg(test)]
    fn keeps_encoding(&self) -> bool {
        matches!(*self.slot(), Encoding::Kept(_))
    }
}

impl Deref for LoggedCommand {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.command
    }
}

impl From<Command> for LoggedCommand {
    fn from(command: Command) -> Self {
        LoggedCommand::new(command)
    }
}

impl PartialEq for LoggedCommand {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
    }
}

impl Eq for LoggedCommand {}

impl std::fmt::Debug for LoggedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

impl std::fmt::Display for LoggedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::decode;

    #[test]
    fn a_logged_command_encodes_as_its_command_and_keeps_the_bytes() {
        let command = Command::SealShard(7);
        let logged = LoggedCommand::new(command.clone());
        let plain = encode(&command).unwrap();
        assert_eq!(encode(&logged).unwrap(), plain, "serde sees only the command");
        assert_eq!(logged.encoded().unwrap(), plain.as_slice());
        assert!(logged.keeps_encoding());
        logged.forget_encoding();
        assert_eq!(logged.encoded().unwrap(), plain.as_slice(), "made again once forgotten");
        assert!(!logged.keeps_encoding(), "but not kept after the apply");
        let back: LoggedCommand = decode(&plain).unwrap();
        assert_eq!(*back, command);
    }
}
