//! A TCP link to a server that a test can cut and mend.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// Forwards connections from its own port to a server's. While cut, the server is out of
/// reach, yet keeps its state, as a server restarting with its data or a network
/// partition would: the forwarded connections are closed and new ones refused, since
/// nothing listens on the link's port.
///
/// Refusing matters: a client whose connection is accepted and then closed at once may
/// take the server for an old one (librdkafka then falls back to an ancient protocol for
/// twenty minutes).
pub struct Link {
    pub port: u16,
    target: u16,
    accepting: Mutex<Option<JoinHandle<()>>>,
    open: Arc<Mutex<JoinSet<()>>>,
}

impl Link {
    /// A link to `target` on 127.0.0.1, which need not be listening yet.
    pub async fn to(target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|error| panic!("no port for a link: {error}"));
        let port = listener.local_addr().expect("a bound listener has an address").port();
        let link = Self { port, target, accepting: Mutex::new(None), open: Arc::default() };
        link.listen(listener);
        link
    }

    /// Closes every forwarded connection and stops listening until [`Link::mend`].
    pub fn cut(&self) {
        if let Some(accepting) =
            self.accepting.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            accepting.abort();
        }
        self.open.lock().unwrap_or_else(PoisonError::into_inner).abort_all();
    }

    /// Listens again on the same port.
    pub async fn mend(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap_or_else(|error| {
            panic!("the link cannot listen on {} again: {error}", self.port)
        });
        self.listen(listener);
    }

    fn listen(&self, listener: TcpListener) {
        let (target, open) = (self.target, Arc::clone(&self.open));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
                while open.try_join_next().is_some() {}
                open.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.accepting.lock().unwrap_or_else(PoisonError::into_inner) = Some(accepting);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
    }
}
