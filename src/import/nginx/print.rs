//! Directives written back as nginx.conf text, one directive per line, so
//! a test can rewrite a parsed config and run the real nginx on it.

use super::lex::quote;
use super::parse::Directive;

/// The text of `directives`, indented by nesting.
pub fn print(directives: &[Directive]) -> String {
    let mut out = String::new();
    write(directives, 0, &mut out);
    out
}

fn write(directives: &[Directive], depth: usize, out: &mut String) {
    for d in directives {
        for _ in 0..depth {
            out.push_str("    ");
        }
        out.push_str(&quote(&d.name));
        for a in &d.args {
            out.push(' ');
            out.push_str(&quote(&a.text));
        }
        match &d.block {
            None => out.push_str(";\n"),
            Some(children) => {
                out.push_str(" {\n");
                write(children, depth + 1, out);
                for _ in 0..depth {
                    out.push_str("    ");
                }
                out.push_str("}\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_text;
    use super::*;

    fn strip(ds: &mut [Directive]) {
        for d in ds {
            d.place.line = 0;
            for a in &mut d.args {
                a.line = 0;
                a.quoted = false;
            }
            if let Some(b) = &mut d.block {
                strip(b);
            }
        }
    }

    #[test]
    fn printing_round_trips() {
        let text = "http {\n server { listen 80; location ~ \\.php$ { return 200 \"a;b \\\"c\\\"\\n\"; } }\n if ($a = \"\") { set $b '${c}d'; }\n}\n";
        let mut a = parse_text(text, "t").unwrap();
        let printed = print(&a);
        let mut b = parse_text(&printed, "t").unwrap();
        strip(&mut a);
        strip(&mut b);
        assert_eq!(a, b, "{printed}");
    }
}
