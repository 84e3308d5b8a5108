//! Background work a server runs beside its requests (outbox relays, event consumers,
//! job workers), stopped in order when the server drains.

use tokio::{sync::oneshot, task::JoinHandle};

/// A spawned task that runs until asked to stop. Dropping the handle aborts the task;
/// [`Background::stop`] lets it finish what it has in hand first.
#[derive(Debug)]
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Background {
    /// Spawns `work`, handing it a future that resolves when the task should stop.
    pub fn spawn<F, Fut>(work: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(work(StopSignal(stopped)));
        Self { stop: Some(stop), task }
    }

    /// Asks the task to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// Resolves when the task's [`Background`] handle asks it to stop, or is dropped.
#[derive(Debug)]
pub struct StopSignal(oneshot::Receiver<()>);

impl Future for StopSignal {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
