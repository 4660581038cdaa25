//! [`FileStore`]: the bytes of shared files in object storage.
//!
//! Object names are `<prefix>/rooms/<room>/<file id>` and `<...>/<file id>.thumb.png`; room
//! ids and file ids are validated names (`[A-Za-z0-9_-]`, `f` + hex), so an object name can
//! never leave its room's folder. Uploads are streamed as multipart uploads (parts of
//! [`PART_BYTES`], at most [`PARTS_IN_FLIGHT`] being sent), so a file is never held whole in
//! memory; an upload that is not finished is aborted and leaves nothing visible.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use crate::config::FilesConfig;
use crate::error::FilesError;

/// Size of one part of a multipart upload.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload being sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Object storage for shared files. Cheap to clone.
#[derive(Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    prefix: Path,
    /// Whether the store keeps Content-Type and Content-Disposition (cloud stores do; the
    /// local folder does not and the gateway sets them when it serves).
    attributes: bool,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

impl FileStore {
    /// Opens the store `cfg` names (creating the local folder if needed). Nothing is read or
    /// written yet: credentials and buckets are checked by the first request.
    pub fn open(cfg: &FilesConfig) -> Result<Self, FilesError> {
        // reqwest's rustls has no provider of its own here: ring, as everywhere in chatmesh.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let Some(url) = &cfg.url else {
            return Self::folder(&cfg.dir);
        };
        let bad = |source| FilesError::Url {
            url: url.clone(),
            source,
        };
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        let prefix = Path::from(url_path(url));
        let (store, signer): (Arc<dyn ObjectStore>, Option<Arc<dyn Signer>>) = match scheme {
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
                for (k, v) in &cfg.options {
                    b = b.with_config(k.parse().map_err(bad)?, v);
                }
                let s3 = Arc::new(b.build().map_err(bad)?);
                (s3.clone(), Some(s3))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (k, v) in &cfg.options {
                    b = b.with_config(k.parse().map_err(bad)?, v);
                }
                let az = Arc::new(b.build().map_err(bad)?);
                (az.clone(), Some(az))
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                for (k, v) in &cfg.options {
                    b = b.with_config(k.parse().map_err(bad)?, v);
                }
                let gcs = Arc::new(b.build().map_err(bad)?);
                (gcs.clone(), Some(gcs))
            }
            "file" => {
                let dir = url.trim_start_matches("file://");
                return Self::folder(std::path::Path::new(dir));
            }
            "memory" => {
                return Ok(Self {
                    store: Arc::new(InMemory::new()),
                    signer: None,
                    prefix,
                    attributes: true,
                })
            }
            _ => return Err(FilesError::Scheme(url.clone())),
        };
        Ok(Self {
            store,
            signer,
            prefix,
            attributes: true,
        })
    }

    fn folder(dir: &std::path::Path) -> Result<Self, FilesError> {
        let folder = |source| FilesError::Folder {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(folder)?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| FilesError::Url {
                url: dir.display().to_string(),
                source,
            })?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            signer: None,
            prefix: Path::default(),
            attributes: false,
        })
    }

    /// Whether downloads can be redirected to presigned URLs.
    pub fn can_presign(&self) -> bool {
        self.signer.is_some()
    }

    /// The object of file `id` of `room`.
    pub fn object(&self, room: &str, id: &str) -> Path {
        self.prefix.clone().join("rooms").join(room).join(id)
    }

    /// The thumbnail of file `id` of `room`.
    pub fn thumbnail(&self, room: &str, id: &str) -> Path {
        self.prefix
            .clone()
            .join("rooms")
            .join(room)
            .join(format!("{id}.thumb.png"))
    }

    /// Starts a streamed upload to `path`; `content_type` and `disposition` are kept by stores
    /// that keep them (what a presigned URL then serves).
    pub async fn upload(
        &self,
        path: &Path,
        content_type: &str,
        disposition: &str,
    ) -> Result<Upload, FilesError> {
        let opts = PutMultipartOptions {
            attributes: self.attributes(content_type, disposition),
            ..PutMultipartOptions::default()
        };
        let inner = self
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(FilesError::store("starting an upload"))?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(inner, PART_BYTES),
        })
    }

    /// Writes a small object at once (thumbnails).
    pub async fn put(
        &self,
        path: &Path,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), FilesError> {
        let opts = PutOptions {
            attributes: self.attributes(content_type, "inline"),
            ..PutOptions::default()
        };
        self.store
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
            .map_err(FilesError::store("writing an object"))?;
        Ok(())
    }

    fn attributes(&self, content_type: &str, disposition: &str) -> Attributes {
        let mut attrs = Attributes::new();
        if self.attributes {
            attrs.insert(Attribute::ContentType, content_type.to_owned().into());
            attrs.insert(Attribute::ContentDisposition, disposition.to_owned().into());
        }
        attrs
    }

    /// Reads `path`, or the byte `range` of it.
    pub async fn get(
        &self,
        path: &Path,
        range: Option<Range<u64>>,
    ) -> Result<GetResult, FilesError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        self.store
            .get_opts(path, opts)
            .await
            .map_err(FilesError::store("reading an object"))
    }

    /// Reads `path` whole, unless it is larger than `max` bytes.
    pub async fn read_all(&self, path: &Path, max: u64) -> Result<Bytes, FilesError> {
        let got = self.get(path, None).await?;
        if got.meta.size > max {
            return Err(FilesError::TooLarge(max));
        }
        let mut out = Vec::with_capacity(usize::try_from(got.meta.size).unwrap_or(0));
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(FilesError::store("reading an object"))?;
            if (out.len() + chunk.len()) as u64 > max {
                return Err(FilesError::TooLarge(max));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// Deletes `path`; an object that is already gone is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), FilesError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(FilesError::Store {
                what: "deleting an object",
                source,
            }),
        }
    }

    /// A URL that reads `path` without credentials for `valid`, if the store can sign one.
    pub async fn presigned(
        &self,
        path: &Path,
        valid: Duration,
    ) -> Result<Option<String>, FilesError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(object_store::signer::Method::GET, path, valid)
            .await
            .map_err(FilesError::store("signing a URL"))?;
        Ok(Some(url.to_string()))
    }
}

/// The path part of an object storage URL (the prefix inside the bucket).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split_once('/')
        .map_or("", |(_, p)| p.trim_matches('/'))
}

/// A streamed upload: [`Upload::write`] the bytes in order, then [`Upload::finish`] (the
/// object appears whole) or [`Upload::abort`] (nothing appears).
pub struct Upload {
    writer: WriteMultipart,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").finish_non_exhaustive()
    }
}

impl Upload {
    /// Adds `bytes`; waits while [`PARTS_IN_FLIGHT`] parts are being sent.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), FilesError> {
        self.writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(FilesError::store("uploading a part"))?;
        self.writer.put(bytes);
        Ok(())
    }

    /// Completes the upload.
    pub async fn finish(self) -> Result<(), FilesError> {
        self.writer
            .finish()
            .await
            .map_err(FilesError::store("completing an upload"))?;
        Ok(())
    }

    /// Abandons the upload; what was sent is deleted.
    pub async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "could not abort an upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_prefixes() {
        assert_eq!(url_path("s3://bucket/a/b/"), "a/b");
        assert_eq!(url_path("s3://bucket"), "");
        assert_eq!(url_path("memory://"), "");
    }

    #[tokio::test]
    async fn upload_then_read_a_range_then_delete() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FilesConfig {
            dir: dir.path().join("files"),
            ..FilesConfig::default()
        };
        let store = FileStore::open(&cfg).unwrap();
        let path = store.object("general", "f00");
        let mut up = store
            .upload(&path, "text/plain", "attachment")
            .await
            .unwrap();
        up.write(Bytes::from_static(b"hello, ")).await.unwrap();
        up.write(Bytes::from_static(b"world")).await.unwrap();
        up.finish().await.unwrap();
        let got = store.get(&path, Some(7..12)).await.unwrap();
        assert_eq!(got.bytes().await.unwrap(), Bytes::from_static(b"world"));
        assert!(matches!(
            store.read_all(&path, 4).await,
            Err(FilesError::TooLarge(4))
        ));
        store.delete(&path).await.unwrap();
        store.delete(&path).await.unwrap();
        assert!(matches!(
            store.get(&path, None).await,
            Err(FilesError::NotFound)
        ));
    }

    #[tokio::test]
    async fn an_aborted_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FilesConfig {
            dir: dir.path().to_path_buf(),
            ..FilesConfig::default()
        };
        let store = FileStore::open(&cfg).unwrap();
        let path = store.object("general", "f01");
        let mut up = store
            .upload(&path, "text/plain", "attachment")
            .await
            .unwrap();
        up.write(Bytes::from_static(b"partial")).await.unwrap();
        up.abort().await;
        assert!(matches!(
            store.get(&path, None).await,
            Err(FilesError::NotFound)
        ));
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
