//! [`IntoDownload`]: what a download or a record stream starts from.

use std::borrow::Borrow;

use dap_proto::{Config, Download, DownloadSpec, Format, QueryResult};

mod sealed {
    pub trait Sealed {}
    impl Sealed for dap_proto::QueryResult {}
    impl Sealed for &dap_proto::QueryResult {}
}

/// A query result to download: lent (`&result`) or given (`result`).
///
/// Lent, its pre-signed URLs stay shared with the caller's copy until the caller drops
/// it. Given, each object's URL is freed as soon as the object is done, so memory stays
/// flat however many objects the job has (pre-signed URLs run to a kilobyte each). A
/// result of a query run with [`dap_proto::Query::urls_on_demand`] carries no URLs at
/// all: lent or given, the download fetches them a batch at a time as it reaches them.
pub trait IntoDownload: sealed::Sealed + Borrow<QueryResult> {
    /// The format of the result's objects.
    fn format(&self) -> Format {
        self.borrow().format
    }

    /// The core's download machine for the result.
    fn into_download(
        self,
        config: &Config,
        spec: DownloadSpec,
    ) -> Result<Download, dap_proto::Error>;
}

impl IntoDownload for &QueryResult {
    fn into_download(
        self,
        config: &Config,
        spec: DownloadSpec,
    ) -> Result<Download, dap_proto::Error> {
        Download::new(config, self, spec)
    }
}

impl IntoDownload for QueryResult {
    fn into_download(
        self,
        config: &Config,
        spec: DownloadSpec,
    ) -> Result<Download, dap_proto::Error> {
        Download::from_result(config, self, spec)
    }
}
