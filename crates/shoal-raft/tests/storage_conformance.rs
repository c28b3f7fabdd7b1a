//! openraft's storage conformance suite against Shoal's RocksDB log store and every
//! kind of state machine (one shard, several shards, metadata), and the same on the in-memory
//! database the simulation uses (so the simulation runs on storage that passes it).

use std::sync::Arc;
use std::time::Duration;

use openraft::StorageError;
use openraft::errors::ErrorSource;
use openraft::impls::BoxedErrorSource;
use openraft::testing::log::{StoreBuilder, Suite};
use shoal_raft::{GroupLogStore, GroupStateMachine, MetaState, ShardProgress, StateWatch, TypeConfig};
use shoal_storage::NodeDb;
use tokio::sync::watch;

#[derive(Clone, Copy)]
enum Kind {
    Shard,
    /// A group that carries several shards, each under its own store id.
    PackedShards,
    Meta,
}

struct RocksStoreBuilder(Kind);

impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, tempfile::TempDir> for RocksStoreBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, GroupLogStore, GroupStateMachine), StorageError<TypeConfig>> {
        let to_storage_error = |e: std::io::Error| StorageError::read(BoxedErrorSource::from_error(&e));
        let dir = tempfile::tempdir().map_err(to_storage_error)?;
        let db = NodeDb::open(dir.path()).map_err(to_storage_error)?;
        let (log, state_machine) = open_groups(db, self.0).map_err(to_storage_error)?;
        Ok((dir, log, state_machine))
    }
}

fn open_groups(db: NodeDb, kind: Kind) -> std::io::Result<(GroupLogStore, GroupStateMachine)> {
    let group = 42;
    let watch = match kind {
        Kind::Shard => StateWatch::Shard(watch::channel(ShardProgress::default()).0),
        Kind::PackedShards => StateWatch::Shards(
            [100, 101, 102].into_iter().map(|store| (store, watch::channel(ShardProgress::default()).0)).collect(),
        ),
        Kind::Meta => StateWatch::Meta(watch::channel(Arc::new(MetaState::default())).0),
    };
    let state_machine = GroupStateMachine::open(db.clone(), group, watch)?;
    let log = match kind {
        Kind::Meta => GroupLogStore::new(db, group),
        // A shard group's log keeps purged entries (its records are in them).
        Kind::Shard | Kind::PackedShards => GroupLogStore::for_shards(db, group),
    };
    Ok((log, state_machine))
}

struct MemoryStoreBuilder(Kind);

impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, ()> for MemoryStoreBuilder {
    async fn build(&self) -> Result<((), GroupLogStore, GroupStateMachine), StorageError<TypeConfig>> {
        let db = NodeDb::in_memory(Duration::from_millis(1));
        let (log, state_machine) =
            open_groups(db, self.0).map_err(|e| StorageError::read(BoxedErrorSource::from_error(&e)))?;
        Ok(((), log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_with_shard_state_machine_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(MemoryStoreBuilder(Kind::Shard)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_with_meta_state_machine_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(MemoryStoreBuilder(Kind::Meta)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_store_with_shard_state_machine_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksStoreBuilder(Kind::Shard)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_store_with_meta_state_machine_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksStoreBuilder(Kind::Meta)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_store_with_packed_shards_state_machine_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>>
{
    Suite::test_all(RocksStoreBuilder(Kind::PackedShards)).await
}
