//! Errors of the file store; the source is kept.

/// A failure of object storage or of reading an image.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("files.url {url:?} cannot be used")]
    Url {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("files.url {0:?}: the scheme must be file, s3, az (or azure, abfs), gs or memory")]
    Scheme(String),
    #[error("creating the files folder {path}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object storage: {what}")]
    Store {
        what: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("no such object")]
    NotFound,
    #[error("the object is larger than {0} bytes")]
    TooLarge(u64),
    #[error("decoding the image")]
    Image(#[source] image::ImageError),
    #[error("decoding the image: a worker thread failed")]
    Join(#[source] tokio::task::JoinError),
}

impl FilesError {
    pub(crate) fn store(what: &'static str) -> impl FnOnce(object_store::Error) -> Self {
        move |source| match source {
            object_store::Error::NotFound { .. } => FilesError::NotFound,
            source => FilesError::Store { what, source },
        }
    }
}
