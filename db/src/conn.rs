//! Connection strings, as the official client accepts them, plus `sqlite:`.
//!
//! * `postgresql://user:password@host:port/database?ssl=MODE` and
//!   `mysql://user:password@host:port/database?ssl=MODE` (MySQL or MariaDB; default port
//!   3306; `mariadb://` is accepted as well): user, password and
//!   database are percent-decoded. `ssl` is the official client's parameter; `sslmode`
//!   (libpq's name) is accepted too. Modes: `disable` (the default, as in the official
//!   client), `allow`, `prefer`, `require` (encrypted, certificate not checked, as the
//!   official client does), `verify-ca` (the certificate must chain to a trusted root)
//!   and `verify-full` (and name the host). `sslrootcert=FILE` adds PEM roots to the
//!   bundled web roots. `postgres://` is accepted as well.
//!   The official client reads the same parameters for both servers.
//! * `sqlite:///absolute/path.db`, `sqlite://relative/path.db` or `sqlite:path.db`.
//!
//! The password is a secret: [`ConnectionString`]'s `Debug` and `Display` and every
//! error replace it with `***`.

use std::fmt;
use std::path::PathBuf;

/// How a connection to a database server uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Never.
    #[default]
    Disable,
    /// Plain first, TLS if the server refuses plain connections.
    Allow,
    /// TLS first, plain if the server has no TLS.
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate chains to a trusted root (any host name).
    VerifyCa,
    /// TLS, certificate chains to a trusted root and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// A database password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password itself.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Where a PostgreSQL server is and how to log in.
pub type PgTarget = ServerTarget;

/// Where a database server (PostgreSQL, MySQL, MariaDB) is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    /// Host name or address (default `localhost`).
    pub host: String,
    /// Port (default 5432 for PostgreSQL, 3306 for MySQL).
    pub port: u16,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Password>,
    /// Database name.
    pub database: Option<String>,
    /// TLS mode.
    pub ssl: SslMode,
    /// Extra PEM root certificates.
    pub root_cert: Option<PathBuf>,
}

/// A database server a store talks to: where it is, and how its connection string is
/// shown (without the password).
#[derive(Debug)]
pub(crate) struct ServerConn {
    pub(crate) target: ServerTarget,
    pub(crate) shown: String,
}

impl ServerConn {
    /// The server `target` of `conn`.
    pub(crate) fn new(target: &ServerTarget, conn: &ConnectionString) -> Self {
        Self {
            target: target.clone(),
            shown: conn.to_string(),
        }
    }

    /// The password, for the driver and for redacting errors.
    pub(crate) fn password(&self) -> Option<&str> {
        self.target.password.as_ref().map(Password::secret)
    }
}

/// The database a connection string names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A PostgreSQL server.
    Postgres(PgTarget),
    /// A MySQL or MariaDB server.
    MySql(ServerTarget),
    /// A SQLite file.
    Sqlite(PathBuf),
}

/// A parsed connection string. `Display` shows it with the password replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    target: Target,
    shown: String,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionString({})", self.shown)
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Why a connection string was refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// None was given.
    #[error(
        "Missing database connection string. Please provide a valid connection string \
         (--connection-string or DAP_CONNECTION_STRING)."
    )]
    Missing,
    /// It could not be read.
    #[error(
        "Invalid database connection string ({0}). Please verify its format and ensure \
         special characters are properly URL-encoded."
    )]
    Invalid(String),
    /// A database this build cannot write to.
    #[error(
        "the {0} dialect is not supported; use postgresql://..., mysql://... or \
         sqlite:///path/to/file.db"
    )]
    Unsupported(String),
}

impl ConnectionString {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ConnectionStringError::Missing);
        }
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(ConnectionStringError::Invalid(
                "no scheme such as postgresql://, mysql:// or sqlite://".to_owned(),
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" => parse_server(rest, Server::Postgres),
            "mysql" | "mariadb" => parse_server(rest, Server::MySql),
            "sqlite" => parse_sqlite(rest),
            other => Err(ConnectionStringError::Unsupported(other.to_owned())),
        }
    }

    /// The database it names.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The dialect name (`postgresql`, `mysql`, `sqlite`).
    pub fn dialect(&self) -> &'static str {
        match self.target {
            Target::Postgres(_) => "postgresql",
            Target::MySql(_) => "mysql",
            Target::Sqlite(_) => "sqlite",
        }
    }

    /// The password, if any (to redact it from messages that quote a server).
    pub fn password(&self) -> Option<&str> {
        match &self.target {
            Target::Postgres(t) | Target::MySql(t) => t.password.as_ref().map(Password::secret),
            Target::Sqlite(_) => None,
        }
    }
}

fn invalid(what: &str) -> ConnectionStringError {
    ConnectionStringError::Invalid(what.to_owned())
}

fn parse_sqlite(rest: &str) -> Result<ConnectionString, ConnectionStringError> {
    let path = match rest.strip_prefix("//") {
        Some(after) => after,
        None => rest,
    };
    let path = percent_decode(path).ok_or_else(|| invalid("bad percent-encoding in the path"))?;
    if path.is_empty() {
        return Err(invalid("no file path after sqlite://"));
    }
    Ok(ConnectionString {
        shown: format!("sqlite://{path}"),
        target: Target::Sqlite(PathBuf::from(path)),
    })
}

/// The kinds of server a connection string can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    MySql,
}

impl Server {
    fn scheme(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::MySql => "mysql",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::MySql => 3306,
        }
    }
}

fn parse_server(rest: &str, server: Server) -> Result<ConnectionString, ConnectionStringError> {
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| invalid(&format!("expected {}://", server.scheme())))?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], &main[i + 1..]),
        None => (main, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let u = percent_decode(u).ok_or_else(|| invalid("bad percent-encoding in the user"))?;
            let p = match p {
                Some(p) => {
                    Some(Password(percent_decode(p).ok_or_else(|| {
                        invalid("bad percent-encoding in the password")
                    })?))
                }
                None => None,
            };
            ((!u.is_empty()).then_some(u), p.filter(|p| !p.0.is_empty()))
        }
    };
    let (host, port) = split_host_port(hostport)?;
    let database =
        percent_decode(path).ok_or_else(|| invalid("bad percent-encoding in the database"))?;
    let (ssl, root_cert) = parse_query(query)?;
    let target = ServerTarget {
        host: if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        },
        port: port.unwrap_or(server.default_port()),
        user,
        password,
        database: (!database.is_empty()).then_some(database),
        ssl,
        root_cert,
    };
    let shown = show_server(server, &target, query);
    Ok(ConnectionString {
        target: match server {
            Server::Postgres => Target::Postgres(target),
            Server::MySql => Target::MySql(target),
        },
        shown,
    })
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), ConnectionStringError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| invalid("unclosed [ in the host"))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(invalid("unexpected text after the host")),
        };
        (rest[..end].to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        ),
        None => None,
    };
    Ok((host, port))
}

fn parse_query(query: Option<&str>) -> Result<(SslMode, Option<PathBuf>), ConnectionStringError> {
    let mut ssl = None;
    let mut root = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| invalid("a query parameter without a value"))?;
        let v = percent_decode(v).ok_or_else(|| invalid("bad percent-encoding in a parameter"))?;
        match k {
            "ssl" | "sslmode" => {
                let mode = SslMode::parse(&v)
                    .ok_or_else(|| invalid(&format!("unsupported SSL mode: {v}")))?;
                if ssl.replace(mode).is_some_and(|m| m != mode) {
                    return Err(invalid("conflicting ssl / sslmode parameters"));
                }
            }
            "sslrootcert" => root = Some(PathBuf::from(v)),
            // Other libpq parameters are accepted and ignored, as the official client does.
            _ => {}
        }
    }
    Ok((ssl.unwrap_or_default(), root))
}

fn show_server(server: Server, t: &ServerTarget, query: Option<&str>) -> String {
    let user = match (&t.user, &t.password) {
        (Some(u), Some(_)) => format!("{u}:***@"),
        (Some(u), None) => format!("{u}@"),
        (None, Some(_)) => ":***@".to_owned(),
        (None, None) => String::new(),
    };
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    let db = t.database.as_deref().unwrap_or("");
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}://{user}{host}:{}/{db}{query}", server.scheme(), t.port)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> PgTarget {
        match ConnectionString::parse(s).unwrap().target {
            Target::Postgres(t) => t,
            _ => panic!("not postgres"),
        }
    }

    fn my(s: &str) -> ServerTarget {
        match ConnectionString::parse(s).unwrap().target {
            Target::MySql(t) => t,
            _ => panic!("not mysql"),
        }
    }

    #[test]
    fn mysql_as_the_official_client_reads_it() {
        let t = my("mysql://root:p%40ss@db.example.edu/canvas?ssl=verify-full");
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.password.as_ref().map(Password::secret), Some("p@ss"));
        assert_eq!((t.host.as_str(), t.port), ("db.example.edu", 3306));
        assert_eq!(t.database.as_deref(), Some("canvas"));
        assert_eq!(t.ssl, SslMode::VerifyFull);
        let t = my("mariadb://u@127.0.0.1:3307/db?sslmode=require&sslrootcert=/etc/ca.pem");
        assert_eq!((t.port, t.ssl), (3307, SslMode::Require));
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(my("mysql://root@h/db").ssl, SslMode::Disable);
        let c = ConnectionString::parse("mysql://u:s3cret@h/db").unwrap();
        assert_eq!(c.dialect(), "mysql");
        assert_eq!(c.to_string(), "mysql://u:***@h:3306/db");
        assert_eq!(c.password(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(ConnectionString::parse("mysql://h/db?ssl=sometimes").is_err());
        assert!(ConnectionString::parse("mysql:h/db").is_err());
    }

    #[test]
    fn official_example_decodes_percent_escapes() {
        let t = pg(
            "postgresql://root:%3C%3FYour%3AStrong%40Pass%2Fw0rd%3E@server.example.com:5432/public",
        );
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(
            t.password.as_ref().map(Password::secret),
            Some("<?Your:Strong@Pass/w0rd>")
        );
        assert_eq!(t.host, "server.example.com");
        assert_eq!(t.port, 5432);
        assert_eq!(t.database.as_deref(), Some("public"));
        assert_eq!(t.ssl, SslMode::Disable);
    }

    #[test]
    fn ssl_modes_under_both_names() {
        assert_eq!(pg("postgresql://h/db?ssl=require").ssl, SslMode::Require);
        assert_eq!(
            pg("postgres://h/db?sslmode=verify-full").ssl,
            SslMode::VerifyFull
        );
        assert_eq!(
            pg("postgresql://h/db?sslmode=prefer&application_name=x").ssl,
            SslMode::Prefer
        );
        assert!(ConnectionString::parse("postgresql://h/db?ssl=bogus").is_err());
        assert!(ConnectionString::parse("postgresql://h/db?ssl=require&sslmode=disable").is_err());
    }

    #[test]
    fn hosts_and_ports() {
        let t = pg("postgresql://[::1]:6543/db");
        assert_eq!((t.host.as_str(), t.port), ("::1", 6543));
        let t = pg("postgresql:///db");
        assert_eq!((t.host.as_str(), t.port), ("localhost", 5432));
        assert!(ConnectionString::parse("postgresql://h:99999/db").is_err());
    }

    #[test]
    fn password_never_shown() {
        let c = ConnectionString::parse("postgresql://u:s3cr%40t@h:1/db?ssl=require").unwrap();
        for text in [c.to_string(), format!("{c:?}"), format!("{:?}", c.target())] {
            assert!(!text.contains("s3cr"), "{text}");
        }
        assert_eq!(c.to_string(), "postgresql://u:***@h:1/db?ssl=require");
        assert_eq!(c.password(), Some("s3cr@t"));
    }

    #[test]
    fn sqlite_paths() {
        let path = |s: &str| match ConnectionString::parse(s).unwrap().target {
            Target::Sqlite(p) => p,
            _ => panic!("not sqlite"),
        };
        assert_eq!(path("sqlite:///tmp/a.db"), PathBuf::from("/tmp/a.db"));
        assert_eq!(path("sqlite://rel/a.db"), PathBuf::from("rel/a.db"));
        assert_eq!(path("sqlite:a%20b.db"), PathBuf::from("a b.db"));
        assert!(ConnectionString::parse("sqlite://").is_err());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            ConnectionString::parse("  "),
            Err(ConnectionStringError::Missing)
        );
        assert!(matches!(
            ConnectionString::parse("mssql://root@h/db"),
            Err(ConnectionStringError::Unsupported(d)) if d == "mssql"
        ));
        assert!(ConnectionString::parse("nonsense").is_err());
        assert!(ConnectionString::parse("postgresql://u:%zz@h/db").is_err());
    }
}
