//! The node id: a random name generated the first time a data directory is used and kept in
//! `node-id` beside the spool, so that logs, metrics, audit records and the rows a node writes to
//! a shared database say which node they come from, across restarts. Nothing here decides what
//! the id is used for.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;

use crate::error::SpoolError;

/// The file in the data directory that holds the id.
pub const NODE_ID_FILE: &str = "node-id";

/// Hex digits in an id: 64 random bits, so that ids generated independently do not collide.
const LEN: usize = 16;

/// The node id of `data_dir`, created (0600, fsynced with its directory) when missing. A file
/// that does not hold an id is an error, never replaced: the shared counters are keyed by it,
/// so a new id would count a node's traffic twice.
pub fn node_id(data_dir: &Path) -> Result<String, SpoolError> {
    let path = data_dir.join(NODE_ID_FILE);
    let fail = |source| SpoolError::NodeId {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if is_node_id(id) {
                return Ok(id.to_owned());
            }
            Err(fail(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("not a node id ({LEN} lowercase hex digits)"),
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut bytes = [0u8; LEN / 2];
            rand::rng().fill_bytes(&mut bytes);
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(fail)?;
            file.write_all(format!("{id}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(fail)?;
            File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
            tracing::info!(node = %id, path = %path.display(), "node id generated");
            Ok(id)
        }
        Err(e) => Err(fail(e)),
    }
}

fn is_node_id(text: &str) -> bool {
    text.len() == LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_id_is_generated_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = node_id(dir.path()).expect("generated");
        assert!(is_node_id(&first), "{first}");
        let mode = fs::metadata(dir.path().join(NODE_ID_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(node_id(dir.path()).expect("read back"), first);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(node_id(other.path()).expect("generated"), first);
    }

    #[test]
    fn a_file_that_holds_no_id_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NODE_ID_FILE);
        for bad in ["", "xyz\n", "0123456789ABCDEF\n", "0123456789abcdef0\n"] {
            fs::write(&path, bad).expect("write");
            assert!(node_id(dir.path()).is_err(), "{bad:?}");
            assert_eq!(fs::read_to_string(&path).expect("kept"), bad);
        }
    }
}
