//! The blocking transport's driver: `dap_ureq::Client`, called directly.

use super::*;

pub(crate) struct UreqDriver {
    client: dap_ureq::Client,
    dispatch: Option<tracing::Dispatch>,
}

impl UreqDriver {
    pub(crate) fn new(
        config: Config,
        dispatch: Option<tracing::Dispatch>,
        options: dap_client::Options,
    ) -> Self {
        let client =
            dap_ureq::Client::with_options(config, options).expect("the ureq client builds");
        Self { client, dispatch }
    }

    fn call_blocking(&self, call: Call) -> Result<Answer, Failure> {
        let c = &self.client;
        with_logs(self.dispatch.as_ref(), || {
            Ok(match call {
                Call::ListTables { namespace } => Answer::Tables(c.list_tables(&namespace)?),
                Call::Schema { namespace, table } => {
                    Answer::Schema(c.table_schema(&namespace, &table)?)
                }
                Call::Query {
                    namespace,
                    table,
                    query,
                } => Answer::Query(c.query(&namespace, &table, query)?),
                Call::Snapshot {
                    namespace,
                    table,
                    format,
                } => Answer::Query(c.snapshot(&namespace, &table, format)?),
                Call::Incremental {
                    namespace,
                    table,
                    format,
                    since,
                    until,
                } => Answer::Query(c.incremental(&namespace, &table, format, since, until)?),
                Call::GetJob { job } => Answer::Job(c.get_job(&job)?),
                Call::ObjectUrls { objects } => Answer::Urls(c.object_urls(&objects)?),
            })
        })
    }
}

impl Driver for UreqDriver {
    fn transport(&self) -> Transport {
        Transport::Ureq
    }

    fn logins(&self) -> u64 {
        self.client.logins()
    }

    fn call(&self, call: Call) -> Result<Answer, Failure> {
        self.call_blocking(call)
    }

    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .into_iter()
                .map(|call| s.spawn(move || self.call_blocking(call)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a client thread panicked"))
                .collect()
        })
    }

    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure> {
        let options = spec.options();
        let files = with_logs(self.dispatch.as_ref(), || {
            self.client.download(result, dir, &options)
        })?;
        Ok(files.into_iter().map(Downloaded::from).collect())
    }

    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure> {
        with_logs(self.dispatch.as_ref(), || {
            self.client
                .records(result)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::from)
        })
    }

    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure> {
        with_logs(self.dispatch.as_ref(), || {
            self.client
                .json_records(result)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::from)
        })
    }
}
