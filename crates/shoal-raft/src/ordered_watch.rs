//! openraft's watch channels: tokio's `watch`, with receivers woken in a fixed order.
//!
//! openraft coordinates its tasks (replication streams, I/O progress, metrics)
//! through watch channels. Tokio's `watch::Receiver::changed` parks each waiting
//! receiver on one of eight `Notify`s chosen at random (to spread contention),
//! so which task runs first after a change differs from run to run — and so does
//! the order of the messages those tasks send. That alone made two runs of the same
//! simulated schedule diverge. [`OrderedWatch`] keeps tokio's channel for the value
//! and its versions but parks receivers on one `Notify` per channel, which wakes
//! them in the order they started waiting. Channels in openraft have a handful of
//! receivers, so the contention tokio avoids does not arise here.

use std::sync::Arc;

use openraft::OptionalSend;
use openraft::OptionalSync;
use openraft::rt::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};
use tokio::sync::{Notify, watch};

/// The [`Watch`] of [`ShoalRuntime`](crate::runtime::ShoalRuntime).
pub struct OrderedWatch;

/// Wakes every waiting receiver when dropped: declared after the sender in
/// [`SenderInner`], it runs once the channel is closed, so the woken receivers
/// see the closure.
struct WakeOnDrop(Arc<Notify>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

struct SenderInner<T> {
    sender: watch::Sender<T>,
    notify: WakeOnDrop,
}

pub struct OrderedWatchSender<T> {
    inner: Arc<SenderInner<T>>,
}

impl<T> Clone for OrderedWatchSender<T> {
    fn clone(&self) -> Self {
        OrderedWatchSender { inner: self.inner.clone() }
    }
}

pub struct OrderedWatchReceiver<T> {
    receiver: watch::Receiver<T>,
    notify: Arc<Notify>,
}

impl<T> Clone for OrderedWatchReceiver<T> {
    fn clone(&self) -> Self {
        OrderedWatchReceiver { receiver: self.receiver.clone(), notify: self.notify.clone() }
    }
}

impl Watch for OrderedWatch {
    type Sender<T: OptionalSend + OptionalSync> = OrderedWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = OrderedWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = watch::Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (sender, receiver) = watch::channel(init);
        let notify = Arc::new(Notify::new());
        let inner = SenderInner { sender, notify: WakeOnDrop(notify.clone()) };
        (OrderedWatchSender { inner: Arc::new(inner) }, OrderedWatchReceiver { receiver, notify })
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<OrderedWatch, T> for OrderedWatchSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.sender.send(value).map_err(|e| SendError(e.0))?;
        self.inner.notify.0.notify_waiters();
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = self.inner.sender.send_if_modified(modify);
        if modified {
            self.inner.notify.0.notify_waiters();
        }
        modified
    }

    fn borrow_watched(&self) -> watch::Ref<'_, T> {
        self.inner.sender.borrow()
    }

    fn subscribe(&self) -> OrderedWatchReceiver<T> {
        OrderedWatchReceiver { receiver: self.inner.sender.subscribe(), notify: self.inner.notify.0.clone() }
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<OrderedWatch, T> for OrderedWatchReceiver<T> {
    /// Like tokio's `changed`: returns once a value not yet seen is there (marking
    /// it seen), or an error once the channel is closed with nothing new.
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before looking, so a change made after the look wakes it.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.receiver.borrow_and_update().has_changed() {
                return Ok(());
            }
            if self.receiver.has_changed().is_err() {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> watch::Ref<'_, T> {
        self.receiver.borrow()
    }

    fn borrow_and_update(&mut self) -> watch::Ref<'_, T> {
        self.receiver.borrow_and_update()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn receivers_see_changes_and_closure() {
        let (sender, mut receiver) = OrderedWatch::channel(0u32);
        let waiting = tokio::spawn(async move {
            receiver.changed().await.unwrap();
            let seen = *receiver.borrow_watched();
            (seen, receiver)
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        sender.send(7).unwrap();
        let (seen, mut receiver) = waiting.await.unwrap();
        assert_eq!(seen, 7);
        assert!(sender.send_if_modified(|v| {
            *v = 8;
            true
        }));
        receiver.changed().await.unwrap();
        assert_eq!(*receiver.borrow_watched(), 8);
        let closed = tokio::spawn(async move { receiver.changed().await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(sender);
        assert!(closed.await.unwrap().is_err(), "closing the channel ends the wait");
    }

    #[tokio::test]
    async fn waiters_wake_in_the_order_they_started_waiting() {
        let (sender, receiver) = OrderedWatch::channel(0u32);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (mut receiver, order) = (receiver.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                receiver.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        sender.send(1).unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
