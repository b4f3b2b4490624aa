//! What the importer knows about each nginx directive: where nginx allows
//! it (so a misplaced one is a parse error, as `nginx -t` says) and what
//! becomes of it when the translator does not consume it.

/// Contexts, as nginx's `NGX_*_CONF` flags.
pub type Ctx = u16;
pub const MAIN: Ctx = 1;
pub const EVENTS: Ctx = 1 << 1;
pub const HTTP: Ctx = 1 << 2;
pub const SRV: Ctx = 1 << 3;
pub const LOC: Ctx = 1 << 4;
/// `if` in a server.
pub const SIF: Ctx = 1 << 5;
/// `if` in a location.
pub const LIF: Ctx = 1 << 6;
pub const UPS: Ctx = 1 << 7;
/// `limit_except`.
pub const LMT: Ctx = 1 << 8;
/// Inside `stream` or `mail`: not checked, not translated.
pub const OTHER: Ctx = 1 << 9;

const HSL: Ctx = HTTP | SRV | LOC;
const HSLI: Ctx = HTTP | SRV | LOC | LIF;
const HS: Ctx = HTTP | SRV;

/// What becomes of a directive the translator did not consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The translator handles it where it is valid; left over, it was in
    /// a place or form the translator does not handle.
    Translated,
    /// vigil does not need it: why.
    NotNeeded(&'static str),
    /// vigil cannot do it: why, and what to do instead.
    NotSupported(&'static str, &'static str),
}

/// A known directive.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub ctx: Ctx,
    /// Takes a `{ }` block.
    pub block: bool,
    /// The block holds data lines, not directives (`types`, `map`).
    pub data: bool,
    pub fate: Fate,
}

const fn s(ctx: Ctx, fate: Fate) -> Spec {
    Spec {
        ctx,
        block: false,
        data: false,
        fate,
    }
}

const fn b(ctx: Ctx, fate: Fate) -> Spec {
    Spec {
        ctx,
        block: true,
        data: false,
        fate,
    }
}

const fn data(ctx: Ctx, fate: Fate) -> Spec {
    Spec {
        ctx,
        block: true,
        data: true,
        fate,
    }
}

use Fate::*;

const T: Fate = Translated;
const STREAMS: &str =
    "vigil streams responses to the client as they come and never buffers them to disk";
const HASHES: &str = "vigil sizes its lookup tables itself";
const TLS_DEFAULTS: &str = "vigil speaks TLS 1.2 and 1.3 only, with rustls' AEAD, forward-secret cipher suites and its own session cache and tickets";
const NO_CACHE: &str = "vigil has no response cache";
const CACHE_INSTEAD: &str =
    "put a cache (varnish, the app's own) behind vigil, or let clients cache with Cache-Control";
const HTTP_ONLY: &str = "vigil forwards HTTP (and HTTPS) only";
const HTTP_ONLY_INSTEAD: &str = "run the application behind an HTTP server (uWSGI --http, gunicorn, php-fpm behind a small HTTP server) and use proxy_pass";
const NO_MODULE: &str = "vigil has no equivalent of this nginx module";

/// The spec of `name`, if the importer knows it.
pub fn spec(name: &str) -> Option<Spec> {
    Some(match name {
        // Structure.
        "http" => b(MAIN, T),
        "events" => b(
            MAIN,
            NotNeeded(
                "vigil's worker threads each accept on their own SO_REUSEPORT socket with epoll (tokio); nothing to tune",
            ),
        ),
        "stream" => b(
            MAIN,
            NotSupported(
                "vigil proxies HTTP only, not raw TCP/UDP streams",
                "keep a stream proxy (nginx stream, haproxy) for these ports",
            ),
        ),
        "mail" => b(
            MAIN,
            NotSupported(
                "vigil has no mail proxy",
                "keep a mail proxy for these ports",
            ),
        ),
        "server" => b(HTTP, T), // (also the upstream `server`, handled apart)
        "location" => b(SRV | LOC, T),
        "upstream" => b(HTTP, T),
        "if" => b(
            SRV | LOC,
            NotSupported(
                "vigil has no general conditions; only the https-redirect (`if ($scheme = http)`) and host-check (`if ($host = ...)`) idioms are translated",
                "express the condition with separate servers (server_name) or locations, or move it into the application",
            ),
        ),
        "limit_except" => b(
            LOC,
            NotSupported(
                "vigil has no per-method access rules",
                "let the application refuse the methods, or add a location that returns 405",
            ),
        ),
        "types" => data(
            HSL,
            NotNeeded(
                "vigil has a built-in MIME table (nginx's mime.types and more), chosen by file extension",
            ),
        ),
        "map" => data(HTTP, T),
        "geo" => data(
            HTTP,
            NotSupported(
                NO_MODULE,
                "move the address-dependent logic into the application",
            ),
        ),
        "split_clients" => data(
            HTTP,
            NotSupported(NO_MODULE, "use weights in an [upstream] for traffic splits"),
        ),
        "charset_map" => data(
            HTTP,
            NotSupported(NO_MODULE, "serve files in the charset you want"),
        ),
        "include" => s(MAIN | EVENTS | HSLI | SIF | UPS | LMT, T),

        // Main context.
        "user" => s(
            MAIN,
            NotNeeded(
                "vigil runs as the user that starts it (systemd User=); VRRP needs CAP_NET_ADMIN and CAP_NET_RAW only",
            ),
        ),
        "worker_processes" => s(MAIN, T),
        "pid" => s(
            MAIN,
            NotNeeded(
                "vigil writes no pid file; systemd tracks the process, and `vigil reload` / SIGHUP reload it",
            ),
        ),
        "worker_rlimit_nofile" => s(
            MAIN,
            NotNeeded("set LimitNOFILE= in vigil's systemd unit (or ulimit -n) instead"),
        ),
        "worker_rlimit_core"
        | "working_directory"
        | "debug_points"
        | "lock_file"
        | "pcre_jit"
        | "timer_resolution"
        | "worker_priority"
        | "worker_shutdown_timeout"
        | "thread_pool"
        | "ssl_engine"
        | "env"
        | "google_perftools_profiles" => s(
            MAIN,
            NotNeeded("a process tuning knob of nginx's; vigil has no counterpart to set"),
        ),
        "worker_cpu_affinity" => s(
            MAIN,
            NotNeeded(
                "vigil pins one worker per CPU by default ([http] worker_cpu_affinity = \"auto\"); CPU masks are not taken",
            ),
        ),
        "daemon" | "master_process" => s(
            MAIN,
            NotNeeded(
                "vigil runs in the foreground under systemd (or docker) and has no master process",
            ),
        ),
        "load_module" => s(
            MAIN,
            NotNeeded("vigil has no dynamic modules; what it supports is built in"),
        ),
        "error_log" => s(MAIN | HSL, T),

        // events { }
        "worker_connections" => s(
            EVENTS,
            NotNeeded(
                "vigil's limit is [http] max_connections (default 100000) for the whole process",
            ),
        ),
        "use"
        | "multi_accept"
        | "accept_mutex"
        | "accept_mutex_delay"
        | "debug_connection"
        | "worker_aio_requests" => s(
            EVENTS,
            NotNeeded(
                "vigil's workers each accept on their own SO_REUSEPORT socket with epoll; nothing to tune",
            ),
        ),

        // http-level tables and zones.
        "log_format" => s(HTTP, T),
        "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "types_hash_max_size"
        | "types_hash_bucket_size"
        | "variables_hash_max_size"
        | "variables_hash_bucket_size"
        | "map_hash_max_size"
        | "map_hash_bucket_size" => s(HTTP, NotNeeded(HASHES)),
        "proxy_headers_hash_max_size" | "proxy_headers_hash_bucket_size" => {
            s(HSL, NotNeeded(HASHES))
        }
        "limit_req_zone" | "limit_conn_zone" => s(HTTP, T),
        "proxy_cache_path" | "fastcgi_cache_path" | "uwsgi_cache_path" | "scgi_cache_path" => {
            s(HTTP, NotSupported(NO_CACHE, CACHE_INSTEAD))
        }

        // server { }
        "listen" => s(SRV, T),
        "server_name" => s(SRV, T),
        "ssl_certificate" | "ssl_certificate_key" => s(HS, T),
        "ssl" => s(HS, T),
        "ssl_protocols"
        | "ssl_ciphers"
        | "ssl_prefer_server_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_dhparam"
        | "ssl_session_cache"
        | "ssl_session_timeout"
        | "ssl_session_tickets"
        | "ssl_session_ticket_key"
        | "ssl_buffer_size"
        | "ssl_early_data"
        | "ssl_conf_command"
        | "ssl_reject_handshake" => s(HS, NotNeeded(TLS_DEFAULTS)),
        "ssl_trusted_certificate"
        | "ssl_stapling"
        | "ssl_stapling_verify"
        | "ssl_stapling_file"
        | "ssl_stapling_responder"
        | "ssl_ocsp"
        | "ssl_ocsp_cache"
        | "ssl_ocsp_responder" => s(
            HS,
            NotSupported(
                "vigil does not staple OCSP responses (clients fetch them, or use CRLite / short-lived certificates)",
                "nothing to do; clients check revocation themselves",
            ),
        ),
        "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" | "ssl_crl" => s(
            HS,
            NotSupported(
                "vigil does not ask clients for certificates (mutual TLS)",
                "check client certificates in a TLS terminator in front of vigil, or in the application",
            ),
        ),
        "ssl_password_file" => s(
            HS,
            NotSupported(
                "vigil cannot decrypt encrypted private keys",
                "decrypt the key: openssl pkey -in KEY -out KEY.plain",
            ),
        ),
        "http2" => s(HS, T),
        "http2_max_concurrent_streams"
        | "http2_recv_buffer_size"
        | "http2_chunk_size"
        | "http2_body_preread_size"
        | "http2_idle_timeout"
        | "http2_max_requests"
        | "http2_max_field_size"
        | "http2_max_header_size"
        | "http2_recv_timeout"
        | "http2_push"
        | "http2_push_preload"
        | "http2_streams_index_size" => s(
            HSL,
            NotNeeded("vigil's HTTP/2 settings are built in (hyper), with flood limits"),
        ),
        "http3"
        | "http3_hq"
        | "http3_max_concurrent_streams"
        | "http3_stream_buffer_size"
        | "quic_retry"
        | "quic_gso"
        | "quic_host_key"
        | "quic_active_connection_id_limit"
        | "quic_bpf" => s(
            HS,
            NotSupported(
                "vigil does not speak HTTP/3 (QUIC)",
                "clients fall back to HTTP/2 and HTTP/1.1 over TLS",
            ),
        ),
        "server_tokens" => s(HSL, NotNeeded("vigil sends no version number")),
        "client_header_timeout" => s(HS, T),
        "client_header_buffer_size" => s(
            HS,
            NotNeeded(
                "vigil reads request heads into its own buffers; the limit is [http] max_header_size",
            ),
        ),
        "large_client_header_buffers" => s(HS, T),
        "ignore_invalid_headers" => s(
            HS,
            NotSupported(
                "vigil's HTTP parser refuses invalid header names",
                "send valid header names",
            ),
        ),
        "underscores_in_headers" => s(
            HS,
            NotNeeded("vigil passes header names with underscores on"),
        ),
        "merge_slashes" => s(HS, T),
        "keepalive_timeout" => s(HSL, T),
        "keepalive_requests" | "keepalive_time" => s(
            HSL,
            NotNeeded("vigil keeps a client connection open for any number of requests"),
        ),
        "return" => s(SRV | LOC | SIF | LIF, T),
        "rewrite" => s(SRV | LOC | SIF | LIF, T),
        "set" | "break" => s(
            SRV | LOC | SIF | LIF,
            NotSupported(
                "vigil has no variables of its own to set",
                "express the condition with separate servers or locations",
            ),
        ),
        "rewrite_log" | "uninitialized_variable_warn" => s(
            HSL | SIF | LIF,
            NotNeeded("a logging switch of nginx's rewrite module"),
        ),
        "stub_status" => s(
            SRV | LOC,
            NotSupported(
                "vigil has no nginx status page",
                "use vigil's admin API: /metrics (Prometheus) and /status (JSON) on [admin] listen",
            ),
        ),

        // Locations: content.
        "root" => s(HSLI, T),
        "alias" => s(LOC, T),
        "index" => s(HSL, T),
        "try_files" => s(SRV | LOC, T),
        "internal" => s(LOC, T),
        "expires" => s(HSLI, T),
        "add_header" => s(HSLI, T),
        "add_trailer" => s(
            HSLI,
            NotSupported(
                "vigil does not add trailers",
                "send them from the application",
            ),
        ),
        "default_type" => s(HSL, T),
        "autoindex" | "autoindex_exact_size" | "autoindex_format" | "autoindex_localtime" => s(
            HSL,
            NotSupported(
                "vigil does not list directories",
                "generate an index.html, or serve listings from the application",
            ),
        ),
        "log_not_found" | "log_subrequest" | "open_log_file_cache" => {
            s(HSL, NotNeeded("a logging switch vigil does not have"))
        }
        "access_log" => s(HSLI | LMT, T),
        "sendfile" => s(
            HSLI,
            NotNeeded("vigil uses sendfile(2) for files sent over plain HTTP/1.1 by itself"),
        ),
        "tcp_nopush"
        | "tcp_nodelay"
        | "aio"
        | "aio_write"
        | "directio"
        | "directio_alignment"
        | "output_buffers"
        | "postpone_output"
        | "read_ahead"
        | "sendfile_max_chunk"
        | "open_file_cache"
        | "open_file_cache_errors"
        | "open_file_cache_min_uses"
        | "open_file_cache_valid"
        | "reset_timedout_connection"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout"
        | "disable_symlinks" => s(
            HSL,
            NotNeeded("an I/O tuning knob of nginx's; vigil decides these itself"),
        ),
        "etag" | "if_modified_since" => s(
            HSL,
            NotNeeded("vigil answers conditional requests (ETag, Last-Modified) by itself"),
        ),
        "charset" | "source_charset" | "override_charset" | "charset_types" => s(
            HSLI,
            NotSupported(
                "vigil does not add a charset to Content-Type",
                "set the charset in the files (a <meta charset>) or in the application's Content-Type",
            ),
        ),
        "port_in_redirect"
        | "absolute_redirect"
        | "server_name_in_redirect"
        | "msie_padding"
        | "msie_refresh"
        | "recursive_error_pages" => s(
            HSL,
            NotNeeded(
                "vigil writes its own redirects (directory slash redirects are relative to the request's host)",
            ),
        ),
        "client_max_body_size" => s(HSL, T),
        "client_body_timeout" => s(HSL, T),
        "send_timeout" => s(HSL, T),
        "client_body_buffer_size" | "client_body_temp_path" => s(HSL, T),
        "client_body_in_file_only" | "client_body_in_single_buffer" => s(
            HSL,
            NotNeeded(
                "vigil holds a request body in memory up to client_body_buffer_size and in an unlinked temporary file past it",
            ),
        ),
        "chunked_transfer_encoding" => s(
            HSL,
            NotNeeded(
                "vigil frames responses itself (chunked or Content-Length, per HTTP version)",
            ),
        ),
        "limit_rate" | "limit_rate_after" => s(
            HSLI,
            NotSupported(
                "vigil does not throttle response bandwidth",
                "throttle with tc, or in the application",
            ),
        ),
        "satisfy" => s(
            HSL,
            NotSupported(
                "vigil applies access rules and auth_basic together (nginx's satisfy all); `satisfy any` is not supported",
                "give trusted addresses their own location without auth_basic",
            ),
        ),

        // Proxy.
        "proxy_pass" => s(LOC | LIF | LMT, T),
        "proxy_set_header" => s(HSL, T),
        "proxy_connect_timeout"
        | "proxy_read_timeout"
        | "proxy_send_timeout"
        | "proxy_next_upstream"
        | "proxy_next_upstream_tries"
        | "proxy_next_upstream_timeout" => s(HSL, T),
        "proxy_http_version" => s(HSL, T),
        "proxy_redirect" => s(HSL, T),
        "proxy_ssl_verify"
        | "proxy_ssl_trusted_certificate"
        | "proxy_ssl_name"
        | "proxy_ssl_server_name" => s(HSL, T),
        "proxy_ssl_protocols"
        | "proxy_ssl_ciphers"
        | "proxy_ssl_session_reuse"
        | "proxy_ssl_verify_depth"
        | "proxy_ssl_conf_command" => s(HSL, NotNeeded(TLS_DEFAULTS)),
        "proxy_ssl_certificate"
        | "proxy_ssl_certificate_key"
        | "proxy_ssl_password_file"
        | "proxy_ssl_crl" => s(
            HSL,
            NotSupported(
                "vigil does not present client certificates to upstreams",
                "terminate mutual TLS to the upstream elsewhere",
            ),
        ),
        "proxy_buffering"
        | "proxy_buffer_size"
        | "proxy_buffers"
        | "proxy_busy_buffers_size"
        | "proxy_temp_file_write_size"
        | "proxy_max_temp_file_size"
        | "proxy_temp_path" => s(HSL, NotNeeded(STREAMS)),
        "proxy_request_buffering" => s(HSL, T),
        "proxy_socket_keepalive" => s(
            HSL,
            NotNeeded(
                "vigil keeps upstream connections alive and closes idle ones after keepalive_timeout",
            ),
        ),
        "proxy_cache"
        | "proxy_cache_key"
        | "proxy_cache_valid"
        | "proxy_cache_use_stale"
        | "proxy_cache_lock"
        | "proxy_cache_lock_timeout"
        | "proxy_cache_lock_age"
        | "proxy_cache_bypass"
        | "proxy_no_cache"
        | "proxy_cache_methods"
        | "proxy_cache_min_uses"
        | "proxy_cache_revalidate"
        | "proxy_cache_background_update"
        | "proxy_cache_convert_head"
        | "proxy_cache_max_range_offset"
        | "proxy_cache_purge"
        | "proxy_store"
        | "proxy_store_access" => s(HSLI, NotSupported(NO_CACHE, CACHE_INSTEAD)),
        "proxy_intercept_errors" => s(HSL, T),
        "proxy_ignore_client_abort" => s(
            HSL,
            NotSupported(
                "vigil cancels the upstream request when the client goes away",
                "make the operation idempotent or queue it in the application",
            ),
        ),
        "proxy_hide_header"
        | "proxy_pass_header"
        | "proxy_ignore_headers"
        | "proxy_pass_request_body"
        | "proxy_pass_request_headers"
        | "proxy_cookie_domain"
        | "proxy_cookie_path"
        | "proxy_cookie_flags"
        | "proxy_method"
        | "proxy_set_body"
        | "proxy_bind"
        | "proxy_pass_trailers"
        | "proxy_limit_rate"
        | "proxy_force_ranges"
        | "proxy_headers_hash" => s(
            HSL,
            NotSupported(
                "vigil does not rewrite upstream responses or requests beyond proxy_set_header",
                "do it in the application",
            ),
        ),

        // Other upstream protocols.
        "uwsgi_pass" | "fastcgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass" => {
            s(LOC | LIF, NotSupported(HTTP_ONLY, HTTP_ONLY_INSTEAD))
        }
        n if n.starts_with("uwsgi_")
            || n.starts_with("fastcgi_")
            || n.starts_with("scgi_")
            || n.starts_with("grpc_")
            || n.starts_with("memcached_") =>
        {
            s(HSL, NotSupported(HTTP_ONLY, HTTP_ONLY_INSTEAD))
        }

        // Access, limits, real IP (translate/edge.rs). Left over: inside
        // `if` or `limit_except`, which vigil has no place for.
        "allow" | "deny" | "auth_basic" | "auth_basic_user_file" => s(HSL | LMT, T),
        "limit_req" | "limit_req_status" | "limit_conn" | "limit_conn_status" => s(HSL, T),
        "limit_req_log_level" | "limit_conn_log_level" => s(
            HSL,
            NotNeeded(
                "vigil counts every limit outcome in vigil_limit_req_requests_total / vigil_limit_conn_requests_total",
            ),
        ),
        "limit_req_dry_run" | "limit_conn_dry_run" => s(
            HSL,
            NotSupported(
                "vigil has no dry-run mode for limits",
                "watch the limit metrics with a high limit first",
            ),
        ),
        "real_ip_header" | "set_real_ip_from" | "real_ip_recursive" => s(HSL, T),
        "resolver" | "resolver_timeout" => s(HSL | UPS, T),
        "auth_request" | "auth_request_set" => s(
            HSL,
            NotSupported(
                "vigil has no sub-request authentication",
                "authenticate in the application, or with auth_basic",
            ),
        ),

        // Compression (translate/edge.rs).
        "gzip" | "gzip_comp_level" | "gzip_types" | "gzip_min_length" | "gzip_vary"
        | "gzip_proxied" | "gzip_http_version" | "brotli" | "brotli_comp_level" | "zstd"
        | "zstd_comp_level" => s(HSLI, T),
        "gzip_buffers" => s(
            HSLI,
            NotNeeded(
                "vigil streams compression with a fixed per-response state (gzip about 256 KiB)",
            ),
        ),
        "gzip_disable" => s(
            HSLI,
            NotSupported(
                "vigil does not exclude clients by User-Agent; it compresses for any client whose Accept-Encoding asks for it (the usual `msie6` matches no browser in use)",
                "",
            ),
        ),
        "gunzip" | "gunzip_buffers" => s(
            HSLI,
            NotSupported(
                "vigil does not decompress upstream responses for clients that cannot read them",
                "let the upstream answer uncompressed to clients without Accept-Encoding: gzip",
            ),
        ),
        "brotli_types" | "zstd_types" => s(
            HSLI,
            NotSupported(
                "vigil's gzip_types chooses the types for all three codings",
                "list these types in gzip_types",
            ),
        ),
        "brotli_static" | "zstd_static" => s(
            HSLI,
            NotSupported(
                "vigil's gzip_static serves precompressed .br and .gz files, not .zst",
                "use gzip_static",
            ),
        ),
        "gzip_static" => s(HSL, T),
        "error_page" => s(HSLI, T),

        // Modules without a counterpart.
        "userid" | "userid_name" | "userid_domain" | "userid_path" | "userid_expires"
        | "userid_p3p" | "userid_flags" | "userid_service" | "userid_mark" => s(
            HSL,
            NotSupported(
                "vigil does not set tracking cookies",
                "set the cookie in the application",
            ),
        ),
        "sub_filter"
        | "sub_filter_once"
        | "sub_filter_types"
        | "sub_filter_last_modified"
        | "ssi"
        | "ssi_types"
        | "ssi_silent_errors"
        | "ssi_last_modified"
        | "ssi_min_file_chunk"
        | "ssi_value_length"
        | "addition_types"
        | "add_before_body"
        | "add_after_body"
        | "xslt_stylesheet"
        | "image_filter"
        | "perl"
        | "perl_set"
        | "perl_modules" => s(
            HSLI,
            NotSupported(
                "vigil does not rewrite response bodies",
                "do it in the application",
            ),
        ),
        "mp4"
        | "mp4_buffer_size"
        | "mp4_max_buffer_size"
        | "flv"
        | "slice"
        | "dav_methods"
        | "dav_access"
        | "create_full_put_path"
        | "min_delete_depth"
        | "secure_link"
        | "secure_link_md5"
        | "secure_link_secret"
        | "random_index"
        | "empty_gif"
        | "mirror"
        | "mirror_request_body"
        | "valid_referers"
        | "referer_hash_max_size"
        | "referer_hash_bucket_size"
        | "ancient_browser"
        | "modern_browser"
        | "hls"
        | "f4f" => s(HSL, NotSupported(NO_MODULE, "do it in the application")),

        // upstream { }
        "least_conn" | "ip_hash" | "hash" | "random" | "keepalive" => s(UPS, T),
        "zone" => s(
            UPS,
            NotNeeded("vigil shares a pool's state between its worker threads by itself"),
        ),
        "sticky" | "ntlm" | "queue" => s(
            UPS,
            NotSupported(NO_MODULE, "use ip_hash, or hash on a cookie ($cookie_name)"),
        ),
        "health_check" => s(
            LOC,
            NotSupported(
                "NGINX Plus active health checks are written in the location; vigil has them per upstream",
                "add health_check = { path = \"/health\" } to the [upstream]",
            ),
        ),
        _ => return None,
    })
}

/// Directives valid inside `upstream { }` that share a name with others.
pub fn upstream_spec(name: &str) -> Option<Spec> {
    match name {
        "server" | "keepalive_timeout" => Some(s(UPS, T)),
        "keepalive_requests" | "keepalive_time" => Some(s(
            UPS,
            NotNeeded(
                "vigil keeps an upstream connection for any number of requests, until keepalive_timeout",
            ),
        )),
        _ => spec(name).filter(|sp| sp.ctx & UPS != 0),
    }
}

/// The context names for an error message.
pub fn ctx_names(ctx: Ctx) -> String {
    let names = [
        (MAIN, "main"),
        (EVENTS, "events"),
        (HTTP, "http"),
        (SRV, "server"),
        (LOC, "location"),
        (SIF, "if in server"),
        (LIF, "if in location"),
        (UPS, "upstream"),
        (LMT, "limit_except"),
    ];
    names
        .iter()
        .filter(|(c, _)| ctx & c != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
