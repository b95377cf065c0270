//! Transfers between nodes, the spool's part: the node id survives a restart, a repeated
//! transfer queues nothing twice (also after the receiver restarted), and leasing for a
//! transfer keeps the queue runner away from the message.

mod common;

use std::time::{Duration, SystemTime};

use common::{body, envelope, open};
use strictmx_spool::TransferReceipt;

#[tokio::test]
async fn the_node_id_is_made_once_and_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = open(dir.path()).node_id().to_owned();
    assert_eq!(first.len(), 16);
    assert_eq!(open(dir.path()).node_id(), first);
    let other = tempfile::tempdir().expect("temporary directory");
    assert_ne!(
        open(other.path()).node_id(),
        first,
        "another spool, another node"
    );
}

#[tokio::test]
async fn a_repeated_transfer_is_not_queued_again_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let transfer = "00000000000000aa.0000000000000001@strictmx".to_owned();
    {
        let spool = open(dir.path());
        let id = spool.reserve_id();
        let receipt = spool
            .submit_transfer(id, transfer.clone(), envelope(&["a@x.example"]), body(64))
            .await
            .expect("first transfer");
        assert_eq!(
            receipt,
            TransferReceipt {
                id: Some(id),
                repeated: 0
            }
        );
        assert_eq!(spool.transfers_remembered().expect("count"), 1);
    }
    let spool = open(dir.path());
    let again = spool
        .submit_transfer(
            spool.reserve_id(),
            transfer.clone(),
            envelope(&["a@x.example"]),
            body(64),
        )
        .await
        .expect("repeat");
    assert_eq!(
        again,
        TransferReceipt {
            id: None,
            repeated: 1
        }
    );
    assert_eq!(spool.list().expect("list").len(), 1, "queued once");
    // A recipient the first transfer did not carry is new under the same id.
    let wider = spool
        .submit_transfer(
            spool.reserve_id(),
            transfer,
            envelope(&["a@x.example", "b@x.example"]),
            body(64),
        )
        .await
        .expect("wider repeat");
    assert_eq!(wider.repeated, 1);
    let id = wider.id.expect("the new recipient is queued");
    let message = spool.message(id).expect("read").expect("queued");
    let addresses: Vec<&str> = message
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(addresses, ["b@x.example"]);
}

#[tokio::test]
async fn transfer_ids_are_forgotten_after_the_memory_period() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = strictmx_spool::Spool::open(&strictmx_spool::SpoolSettings {
        transfer_memory: Duration::ZERO,
        ..common::settings(dir.path())
    })
    .expect("spool");
    for n in 0..3 {
        spool
            .submit_transfer(
                spool.reserve_id(),
                format!("n.{n}@strictmx"),
                envelope(&["a@x.example"]),
                body(64),
            )
            .await
            .expect("transfer");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Each transfer prunes what is older than the memory period: only the last stays.
    assert_eq!(spool.transfers_remembered().expect("count"), 1);
}

#[tokio::test]
async fn a_message_leased_for_a_transfer_is_not_due_until_given_back() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spool = open(dir.path());
    let id = spool
        .submit(envelope(&["a@x.example", "b@y.example"]), body(64))
        .await
        .expect("submit");
    let leased = spool
        .lease_for_transfer(id)
        .expect("lease")
        .expect("free recipients");
    assert_eq!(leased.recipients.len(), 2);
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert!(spool.due(later, 10).expect("due").is_empty(), "leased");
    assert!(
        spool.lease_for_transfer(id).expect("lease").is_none(),
        "already leased"
    );
    spool.release_leases(id, &[0, 1]);
    assert_eq!(spool.due(later, 10).expect("due").len(), 1, "given back");
}
