//! Every way out of the worker cleans up: a worker whose goose cannot be
//! steered (its controller gone) still sends `quit` to its master, its
//! `run` returns the error, and nothing comes from it afterwards (its
//! heartbeat task ended with it). A real worker with goose in-process,
//! against the master's end of the real transport on loopback.

use std::time::Duration;

use bytes::Bytes;
use goose::prelude::*;

use super::{Worker, WorkerConfig, WorkerError};
use crate::protocol::transport::{bind_master, Frame, Inbound, MasterLink};
use crate::protocol::{SpawnOrder, ToMaster, ToWorker};
use crate::shutdown::Shutdown;

const PATIENCE: Duration = Duration::from_secs(20);

/// A user that waits instead of requesting: no target is needed, and the
/// users leave the runtime's threads to the worker.
async fn idle(_user: &mut GooseUser) -> TransactionResult {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// When a worker's goose stops answering.
#[derive(Clone, Copy)]
enum Breaks {
    /// Before anything: the first spawn's command fails.
    AtOnce,
    /// Once the first spawn's users run: the next stop fails.
    AfterSpawn,
}

/// A worker joined to `master` whose goose breaks as `breaks` says;
/// returns the task running it and its node id.
async fn joined_worker(
    master: &mut MasterLink,
    breaks: Breaks,
) -> (
    tokio::task::JoinHandle<Result<super::WorkerExit, WorkerError>>,
    String,
) {
    let mut config = WorkerConfig::new("127.0.0.1", master.port);
    config.heartbeat_interval = Duration::from_millis(100);
    let scenarios = vec![scenario!("WebsiteUser").register_transaction(transaction!(idle))];
    let mut worker = Worker::connect(config, scenarios)
        .await
        .expect("the worker starts");
    let id = worker.node_id().to_string();
    match breaks {
        Breaks::AtOnce => worker.goose.break_controller().await,
        Breaks::AfterSpawn => worker.goose.break_after_spawn = true,
    }
    let task = tokio::spawn(worker.run(Shutdown::new()));
    let ready = next(master, &id).await;
    assert!(matches!(
        ToMaster::from_wire(&ready.payload),
        Ok((ToMaster::ClientReady { .. }, _))
    ));
    assert!(master.outgoing.mark_joined(id.as_bytes(), ready.conn));
    send(master, &id, ToWorker::Ack { index: 0 });
    (task, id)
}

fn spawn_two() -> ToWorker {
    ToWorker::Spawn(SpawnOrder {
        timestamp: 1.0,
        user_classes_count: [("WebsiteUser".to_string(), 2)].into_iter().collect(),
        host: "http://127.0.0.1:1".into(),
        stop_timeout: None,
        co_mitigation: None,
        arrival_rate: None,
        target_tls: None,
    })
}

/// Waits for the worker's report that its users run.
async fn running(master: &mut MasterLink, id: &str) {
    loop {
        let frame = next(master, id).await;
        if let Ok((ToMaster::SpawningComplete { user_count, .. }, _)) =
            ToMaster::from_wire(&frame.payload)
        {
            assert_eq!(user_count, 2);
            return;
        }
    }
}

/// The worker's run ends with goose's error, after its `quit`.
async fn ends_with_quit(
    master: &mut MasterLink,
    id: &str,
    task: tokio::task::JoinHandle<Result<super::WorkerExit, WorkerError>>,
) {
    let ended = tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the worker ends")
        .expect("its task did not panic");
    assert!(
        matches!(ended, Err(WorkerError::Goose(_))),
        "run returns the error: {ended:?}"
    );
    let detail = quit_then_silence(master, id).await;
    assert!(detail.contains("failed"), "the quit says why: {detail}");
}

async fn next(master: &mut MasterLink, id: &str) -> Inbound {
    loop {
        let frame = tokio::time::timeout(PATIENCE, master.incoming.recv())
            .await
            .expect("a frame in time")
            .expect("the link is open");
        if frame.peer == id.as_bytes() {
            return frame;
        }
    }
}

fn send(master: &MasterLink, id: &str, message: ToWorker) {
    let sent = master.outgoing.send(Frame {
        peer: Bytes::from(id.as_bytes().to_vec()),
        payload: Bytes::from(message.to_wire("master")),
    });
    assert!(sent, "the worker is routed");
}

/// Reads the worker's frames until its `quit`, then until the master can
/// no longer route to it (its connection closed, as it does only once
/// nothing of the worker runs on): nothing may follow the quit,
/// heartbeats included.
async fn quit_then_silence(master: &mut MasterLink, id: &str) -> String {
    let detail = loop {
        let frame = next(master, id).await;
        if let Ok((ToMaster::Quit { reason }, _)) = ToMaster::from_wire(&frame.payload) {
            break format!("{reason:?}");
        }
    };
    let probe = || Frame {
        peer: Bytes::from(id.as_bytes().to_vec()),
        payload: Bytes::from(ToWorker::Reconnect.to_wire("master")),
    };
    let mut after = Vec::new();
    let gone = tokio::time::timeout(PATIENCE, async {
        while master.outgoing.send(probe()) {
            if let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(50), master.incoming.recv()).await
            {
                after.push(frame);
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "the worker's connection closes once it ended");
    while let Ok(frame) = master.incoming.try_recv() {
        after.push(frame);
    }
    let after: Vec<_> = after
        .iter()
        .filter(|frame| frame.peer == id.as_bytes())
        .map(|frame| ToMaster::from_wire(&frame.payload))
        .collect();
    assert!(after.is_empty(), "nothing after the quit: {after:?}");
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_goose_cannot_take_ends_the_worker_with_quit() {
    let mut master = bind_master("127.0.0.1", 0, None).await.expect("bind");
    let (task, id) = joined_worker(&mut master, Breaks::AtOnce).await;
    send(&master, &id, spawn_two());
    ends_with_quit(&mut master, &id, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_goose_cannot_take_ends_the_worker_with_quit() {
    let mut master = bind_master("127.0.0.1", 0, None).await.expect("bind");
    let (task, id) = joined_worker(&mut master, Breaks::AfterSpawn).await;
    send(&master, &id, spawn_two());
    running(&mut master, &id).await;
    send(&master, &id, ToWorker::Stop);
    ends_with_quit(&mut master, &id, task).await;
}

/// The watchdog's path: a master silent past its liveness, with users
/// running, makes the worker stop them itself, which goose cannot take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_master_and_a_goose_that_cannot_stop_end_the_worker_with_quit() {
    let mut master = bind_master("127.0.0.1", 0, None).await.expect("bind");
    let (task, id) = joined_worker(&mut master, Breaks::AfterSpawn).await;
    send(&master, &id, spawn_two());
    running(&mut master, &id).await;
    // No heartbeat answers from here on: the master is silent.
    ends_with_quit(&mut master, &id, task).await;
}
