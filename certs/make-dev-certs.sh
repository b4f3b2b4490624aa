#!/usr/bin/env bash
# Makes a development CA and certificates for vigil's examples, tests and
# benchmark, with openssl, into DIR (default: certs/dev next to this
# script). For development only: the CA key is written to DIR too, so
# anyone with DIR can mint certificates trusted by clients that trust
# ca.pem. Never use these for real traffic and never commit them.
#
# Usage: certs/make-dev-certs.sh [DIR]
#
# Files written (certificate files hold the leaf then the intermediate,
# i.e. the chain a server sends; ca.pem is the root clients trust):
#   ca.pem, ca-key.pem                    root CA ("vigil dev root CA")
#   intermediate.pem, intermediate-key.pem
#   localhost.pem, localhost-key.pem      localhost, 127.0.0.1, ::1   (EC P-256, PKCS#8)
#   example.test.pem, example.test-key.pem
#                                         example.test, www.example.test (RSA 2048, PKCS#1)
#   wildcard.example.test.pem, wildcard.example.test-key.pem
#                                         *.example.test              (EC P-256, PKCS#8)
#   other.test.pem, other.test-key.pem    other.test                  (EC P-384, SEC1)
#
# The three key formats are deliberate: vigil reads all of them.
set -euo pipefail

DIR=${1:-"$(cd "$(dirname "$0")" && pwd)/dev"}
DAYS=${DAYS:-825}
mkdir -p "$DIR"
cd "$DIR"
umask 077 # keys are private even on a dev machine

command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }

ext() { # ext FILE LINES... : an extension file for `openssl x509 -extfile`
  local f=$1; shift
  printf '%s\n' "$@" > "$f"
}

# Root CA.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -subj "/CN=vigil dev root CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null

# Intermediate CA, signed by the root.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out intermediate-key.pem
openssl req -new -key intermediate-key.pem -subj "/CN=vigil dev intermediate CA" -out intermediate.csr 2>/dev/null
ext intermediate.ext "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign" \
  "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
openssl x509 -req -in intermediate.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 \
  -days 3650 -extfile intermediate.ext -out intermediate.pem 2>/dev/null

# leaf NAME KEYKIND SAN : key + certificate (leaf + intermediate).
leaf() {
  local name=$1 kind=$2 san=$3
  case "$kind" in
    ec256-pkcs8) openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$name-key.pem" ;;
    ec384-sec1) openssl ecparam -name secp384r1 -genkey -noout -out "$name-key.pem" 2>/dev/null ;;
    rsa-pkcs1) openssl genrsa -traditional -out "$name-key.pem" 2048 2>/dev/null ;;
    *) echo "unknown key kind $kind" >&2; exit 1 ;;
  esac
  openssl req -new -key "$name-key.pem" -subj "/CN=$(echo "${san%%,*}" | sed "s/^[A-Z]*://")" -out "$name.csr" 2>/dev/null
  ext "$name.ext" "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$san" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
  openssl x509 -req -in "$name.csr" -CA intermediate.pem -CAkey intermediate-key.pem -CAcreateserial \
    -sha256 -days "$DAYS" -extfile "$name.ext" -out "$name.leaf.pem" 2>/dev/null
  cat "$name.leaf.pem" intermediate.pem > "$name.pem"
  rm -f "$name.csr" "$name.ext" "$name.leaf.pem"
}

leaf localhost ec256-pkcs8 "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf example.test rsa-pkcs1 "DNS:example.test,DNS:www.example.test"
leaf wildcard.example.test ec256-pkcs8 "DNS:*.example.test"
leaf other.test ec384-sec1 "DNS:other.test"

rm -f intermediate.csr intermediate.ext ./*.srl
chmod 644 ./*.pem
chmod 600 ./*-key.pem
echo "development certificates in $DIR (trust $DIR/ca.pem)"
