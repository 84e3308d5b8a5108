//! Zero-copy responses for bodies read from files.
//!
//! A server copies every body it writes from its memory into the socket. For media
//! segments, the bulk of what Tonearm serves, that copy is most of the work: nginx avoids
//! it with `sendfile(2)`, which hands the page cache to the socket. Tonearm does the same
//! without giving up `Bytes` bodies: [`read`] returns a file's contents as `Bytes` and
//! remembers which open file those bytes came from, and [`SendfileStream`], the connection
//! type of [`crate::http::Server`], sends any body slice that lies within such bytes with
//! `sendfile` from the same file and offset instead of copying it.
//!
//! Every layer above the socket (the router, range slicing, HTTP/1 or HTTP/2 framing)
//! still sees ordinary bytes, so nothing else changes, and whatever cannot be sent from
//! the file is sent from memory: the optimisation never changes what a client receives,
//! provided the file is not rewritten in place while it is held (object storage replaces
//! files by renaming, and an open file keeps the version that was read).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read as _},
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// Bodies smaller than this are copied: a system call saved matters more than the copy.
pub const MIN_SENDFILE_BYTES: usize = 16 * 1024;

/// A file's contents, read whole. On Linux, contents of at least [`MIN_SENDFILE_BYTES`]
/// keep the file open so that [`SendfileStream`] can send them without copying, as long as
/// the process's budget of open files allows; otherwise they are plain bytes.
pub fn read(path: &Path) -> io::Result<Bytes> {
    let mut file = File::open(path)?;
    // read_to_end sizes the buffer from the file's length itself.
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)?;
    if cfg!(target_os = "linux") && contents.len() >= MIN_SENDFILE_BYTES && OPEN_FILES.acquire() {
        Ok(Bytes::from_owner(FileBacked::register(contents, file)))
    } else {
        Ok(Bytes::from(contents))
    }
}

/// How many files [`read`] keeps open now (`sendfile_open_files` in `/metrics`).
pub fn open_files() -> usize {
    OPEN_FILES.held.load(Ordering::Relaxed)
}

/// How many bytes this process has sent with `sendfile` (`sendfile_bytes_total`).
pub fn bytes_sent_from_files() -> u64 {
    SENT_FROM_FILES.load(Ordering::Relaxed)
}

static SENT_FROM_FILES: AtomicU64 = AtomicU64::new(0);

/// Raises the soft limit on open files to the hard limit, as servers do: every connection
/// and every file held for [`read`] is a descriptor. Call it once at startup.
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
    }
}

/// Open files held for sendfile may take at most a quarter of the descriptors, so that
/// connections never run short; past that, contents are served from memory.
struct OpenFileBudget {
    held: AtomicUsize,
    limit: LazyLock<usize>,
}

static OPEN_FILES: OpenFileBudget = OpenFileBudget {
    held: AtomicUsize::new(0),
    limit: LazyLock::new(|| {
        #[cfg(unix)]
        let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20);
        #[cfg(not(unix))]
        let descriptors = 0;
        usize::try_from(descriptors / 4).unwrap_or(usize::MAX)
    }),
};

impl OpenFileBudget {
    fn acquire(&self) -> bool {
        let limit = *self.limit;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < limit).then_some(held + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where registered contents live in memory: start address → end address and file.
/// Registered buffers are live heap allocations, so their ranges never overlap, and an
/// address inside one belongs to it alone.
static REGISTRY: LazyLock<RwLock<BTreeMap<usize, Region>>> = LazyLock::new(Default::default);

struct Region {
    end: usize,
    file: Arc<File>,
}

/// The owner behind registered bytes: the contents in memory and the open file they were
/// read from. Dropping it unregisters the range before the memory is freed.
struct FileBacked {
    contents: Vec<u8>,
}

impl FileBacked {
    fn register(contents: Vec<u8>, file: File) -> Self {
        let start = contents.as_ptr() as usize;
        let region = Region { end: start + contents.len(), file: Arc::new(file) };
        write_registry().insert(start, region);
        Self { contents }
    }
}

impl AsRef<[u8]> for FileBacked {
    fn as_ref(&self) -> &[u8] {
        &self.contents
    }
}

impl Drop for FileBacked {
    fn drop(&mut self) {
        write_registry().remove(&(self.contents.as_ptr() as usize));
        OPEN_FILES.release();
    }
}

fn write_registry() -> std::sync::RwLockWriteGuard<'static, BTreeMap<usize, Region>> {
    REGISTRY.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The open file and offset that hold exactly these bytes, if they were registered.
fn source_of(bytes: &[u8]) -> Option<(Arc<File>, u64)> {
    if bytes.len() < MIN_SENDFILE_BYTES || open_files() == 0 {
        return None;
    }
    let start = bytes.as_ptr() as usize;
    let registry = REGISTRY.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (&base, region) = registry.range(..=start).next_back()?;
    (start + bytes.len() <= region.end).then(|| (region.file.clone(), (start - base) as u64))
}

/// A TCP connection whose writes send file-backed bytes (see [`read`]) with `sendfile`.
pub struct SendfileStream {
    inner: TcpStream,
}

impl SendfileStream {
    pub fn new(inner: TcpStream) -> Self {
        Self { inner }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Writes the slices before the file-backed one (held back with `MSG_MORE` so that
    /// they leave in the same packets as the body), then as much of the file-backed one as
    /// the socket takes.
    #[cfg(target_os = "linux")]
    fn send(
        &self,
        head: &[io::IoSlice<'_>],
        body: &[u8],
        file: &File,
        offset: u64,
    ) -> io::Result<usize> {
        use rustix::net::SendFlags;
        let mut written = 0;
        if !head.is_empty() {
            let head_len: usize = head.iter().map(|slice| slice.len()).sum();
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            let mut control = rustix::net::SendAncillaryBuffer::default();
            written = rustix::net::sendmsg(&self.inner, head, &mut control, flags)?;
            if written < head_len {
                return Ok(written);
            }
        }
        let mut at = offset;
        let sent = match rustix::fs::sendfile(&self.inner, file, Some(&mut at), body.len()) {
            // The file came up short (changed on disk): the memory still holds the bytes.
            Ok(0) => rustix::net::send(&self.inner, body, SendFlags::NOSIGNAL),
            Ok(sent) => {
                SENT_FROM_FILES.fetch_add(sent as u64, Ordering::Relaxed);
                Ok(sent)
            }
            Err(rustix::io::Errno::AGAIN) => Err(rustix::io::Errno::AGAIN),
            // Not every file can be sent from (some filesystems refuse): copy instead.
            Err(_) => rustix::net::send(&self.inner, body, SendFlags::NOSIGNAL),
        };
        match sent {
            Ok(sent) => Ok(written + sent),
            // The head is out; the body waits for the socket to drain.
            Err(rustix::io::Errno::AGAIN) if written > 0 => Ok(written),
            Err(error) => Err(error.into()),
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if let Some((index, (file, offset))) =
            bufs.iter().enumerate().find_map(|(index, slice)| Some((index, source_of(slice)?)))
        {
            loop {
                ready!(self.inner.poll_write_ready(cx))?;
                let sent = self.inner.try_io(Interest::WRITABLE, || {
                    self.send(&bufs[..index], &bufs[index], &file, offset)
                });
                match sent {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    other => return Poll::Ready(other),
                }
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`SendfileStream`]s.
pub struct SendfileListener {
    inner: TcpListener,
}

impl SendfileListener {
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl axum::serve::Listener for SendfileListener {
    type Io = SendfileStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => return (SendfileStream::new(stream), peer),
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    // Most likely out of descriptors: wait for some to close.
                    tracing::error!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn file_with(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// A `SendfileStream` connected to a peer that reads everything until it is shut down.
    async fn connected() -> (SendfileStream, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).await.unwrap();
            received
        });
        (SendfileStream::new(TcpStream::connect(addr).await.unwrap()), reader)
    }

    /// Writes `parts` through a `SendfileStream` and returns what the peer received.
    async fn through_a_socket(parts: Vec<Bytes>) -> Vec<u8> {
        let (mut stream, reader) = connected().await;
        for part in &parts {
            let mut rest = part.clone();
            while !rest.is_empty() {
                let written = stream.write_vectored(&[io::IoSlice::new(&rest)]).await.unwrap();
                rest = rest.slice(written..);
            }
        }
        stream.shutdown().await.unwrap();
        reader.await.unwrap()
    }

    #[test]
    fn large_contents_remember_their_file_and_small_ones_do_not() {
        let large = pattern(100_000);
        let file = file_with(&large);
        let bytes = read(file.path()).unwrap();
        assert_eq!(bytes.as_ref(), large.as_slice());
        let (_, offset) = source_of(&bytes[20_000..60_000]).expect("a slice inside is backed");
        assert_eq!(offset, 20_000);
        assert!(source_of(&bytes[..100]).is_none(), "too small to be worth a system call");
        let copy = bytes.to_vec();
        assert!(source_of(&copy).is_none(), "a copy is not the file");

        let small = read(file_with(b"tiny").path()).unwrap();
        assert!(source_of(&small).is_none());

        let slice = bytes.slice(1000..50_000);
        drop(bytes);
        assert!(source_of(&slice).is_some(), "a slice keeps the contents registered");
        let start = slice.as_ptr();
        drop(slice);
        assert!(unregistered(start), "dropping the last reference unregisters the range");
    }

    /// Whether nothing is registered at `address` any more.
    fn unregistered(address: *const u8) -> bool {
        let registry = REGISTRY.read().unwrap();
        let address = address as usize;
        registry.range(..=address).next_back().is_none_or(|(_, region)| region.end <= address)
    }

    #[tokio::test]
    async fn a_peer_receives_exactly_the_bytes_whether_sent_from_the_file_or_memory() {
        let body = pattern(3 * 1024 * 1024 + 17);
        let file = file_with(&body);
        let backed = read(file.path()).unwrap();
        assert!(source_of(&backed).is_some());
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 3145745\r\n\r\n");
        let mut expected = head.to_vec();
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&body[5..70_000]);
        let before = bytes_sent_from_files();
        let received =
            through_a_socket(vec![head.clone(), backed.clone(), backed.slice(5..70_000)]).await;
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes differ");
        let from_files = bytes_sent_from_files() - before;
        assert!(from_files >= (body.len() + 69_995) as u64, "sent from the file: {from_files}");
    }

    #[tokio::test]
    async fn head_and_body_in_one_vectored_write_arrive_in_order() {
        let body = pattern(200_000);
        let file = file_with(&body);
        let backed = read(file.path()).unwrap();
        let (mut stream, reader) = connected().await;
        let before = bytes_sent_from_files();
        let (head, tail) = (b"head:".as_slice(), b":tail".as_slice());
        let mut parts = vec![Bytes::from_static(head), backed.clone(), Bytes::from_static(tail)];
        // As hyper does: offer every remaining part, advance by what was taken.
        while !parts.is_empty() {
            let slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
            let mut written = stream.write_vectored(&slices).await.unwrap();
            while written > 0 {
                let first = &mut parts[0];
                let taken = written.min(first.len());
                *first = first.slice(taken..);
                written -= taken;
                if parts[0].is_empty() {
                    parts.remove(0);
                }
            }
        }
        stream.shutdown().await.unwrap();
        let received = reader.await.unwrap();
        assert!(bytes_sent_from_files() - before >= body.len() as u64, "not sent from the file");
        let mut expected = head.to_vec();
        expected.extend_from_slice(&body);
        expected.extend_from_slice(tail);
        assert!(received == expected, "the bytes differ");
    }
}
