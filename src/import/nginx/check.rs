//! The structural checks `nginx -t` makes before anything runs: a known
//! directive outside the contexts nginx allows it in, a block directive
//! without a block or a simple one with one. These are errors: nginx
//! would refuse the file, so there is no behaviour to translate.

use super::super::ParseError;
use super::directives::{self, Ctx};
use super::parse::Directive;

/// Checks `directives`, read in context `ctx`.
pub fn check(directives: &[Directive], ctx: Ctx) -> Result<(), ParseError> {
    for d in directives {
        let spec = if ctx == directives::UPS {
            // A directive known elsewhere but not in upstream is misplaced.
            directives::upstream_spec(&d.name).or_else(|| directives::spec(&d.name))
        } else {
            directives::spec(&d.name)
        };
        let err = |message: String| ParseError {
            file: d.place.file.to_string(),
            line: d.place.line,
            message,
        };
        let Some(spec) = spec else {
            // Unknown (a module the importer does not know): reported,
            // not checked. Its block is not read as directives either.
            continue;
        };
        if spec.ctx & ctx == 0 {
            return Err(err(format!(
                "\"{}\" directive is not allowed here (nginx allows it in: {})",
                d.name,
                directives::ctx_names(spec.ctx)
            )));
        }
        match (spec.block, &d.block) {
            (true, None) => {
                return Err(err(format!(
                    "directive \"{}\" has no opening \"{{\"",
                    d.name
                )));
            }
            (false, Some(_)) => {
                return Err(err(format!(
                    "directive \"{}\" is not terminated by \";\"",
                    d.name
                )));
            }
            _ => {}
        }
        if spec.data {
            continue;
        }
        let inner = match d.name.as_str() {
            "http" => directives::HTTP,
            "events" => directives::EVENTS,
            "server" => directives::SRV,
            "location" => directives::LOC,
            "upstream" => directives::UPS,
            "limit_except" => directives::LMT,
            "if" if ctx == directives::SRV || ctx == directives::SIF => directives::SIF,
            "if" => directives::LIF,
            "stream" | "mail" => directives::OTHER,
            _ => continue,
        };
        if inner == directives::OTHER {
            continue;
        }
        if d.name == "server" && ctx != directives::HTTP {
            continue;
        }
        check(d.children(), inner)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_text;
    use super::*;

    fn run(text: &str) -> Result<(), ParseError> {
        check(&parse_text(text, "t.conf").unwrap(), directives::MAIN)
    }

    #[test]
    fn misplaced_directives_are_errors() {
        let e = run("http {\n server {\n  log_format x '$a';\n }\n}\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message
                .contains("\"log_format\" directive is not allowed here"),
            "{}",
            e.message
        );
        assert!(
            run("http { server { listen 80; location / { if ($a) { return 404; } } } }").is_ok()
        );
        assert!(run("server { }").is_err());
        assert!(run("http { location / { } }").is_err());
        assert!(run("http { upstream u { server 10.0.0.1; least_conn; } }").is_ok());
        assert!(run("http { upstream u { listen 80; } }").is_err());
        let e = run("http { server; }").unwrap_err();
        assert!(e.message.contains("no opening"), "{}", e.message);
        let e = run("http { server { listen 80 { } } }").unwrap_err();
        assert!(e.message.contains("not terminated"), "{}", e.message);
    }

    #[test]
    fn unknown_directives_and_data_blocks_pass() {
        assert!(run("http { more_set_headers 'A: b'; types { text/html html; } }").is_ok());
        assert!(run("stream { server { listen 53 udp; } }").is_ok());
    }
}
