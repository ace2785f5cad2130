#!/usr/bin/env bash
# Give the local PostgreSQL (127.0.0.1:5432) a server certificate signed by a test CA, so the
# store's and the sql connector's TLS tests have something real to verify against.
#
# Run as root (by .ci/run); idempotent: the certificates are generated once and reused.
# Writes, in /etc/postgresql-airlock-tls/:
#   ca.pem          the test CA (tests trust it: sslrootcert=.../ca.pem)
#   wrong-ca.pem    a second CA that signed nothing here (tests expect it to be refused)
#   server.pem      the server certificate, SAN DNS:localhost and IP:127.0.0.1, signed by ca.pem
#   server.key      its key, owned by postgres, mode 0600 (PostgreSQL refuses anything looser)
# Plain (non-TLS) clients keep working: pg_hba's `host` lines accept both.
set -euo pipefail

dir=/etc/postgresql-airlock-tls
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

mkdir -p "$dir"
cd "$dir"

if [ ! -s ca.pem ] || [ ! -s server.pem ] || [ ! -s server.key ] || [ ! -s wrong-ca.pem ] \
  || ! openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=Airlock test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$work/wrong-ca.key" -out "$work/wrong-ca.pem" -subj "/CN=Airlock wrong CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
  cat > "$work/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$work/server.ext" -out "$work/server.pem" \
    2>/dev/null
  install -m 0644 "$work/ca.pem" "$work/wrong-ca.pem" "$work/server.pem" "$dir/"
  install -m 0600 -o postgres -g postgres "$work/server.key" "$dir/server.key"
fi
chown postgres:postgres "$dir/server.key"
chmod 0600 "$dir/server.key"

psql_admin -c "ALTER SYSTEM SET ssl = on"
psql_admin -c "ALTER SYSTEM SET ssl_cert_file = '$dir/server.pem'"
psql_admin -c "ALTER SYSTEM SET ssl_key_file = '$dir/server.key'"
psql_admin -c "SELECT pg_reload_conf()" >/dev/null

# The reload is asynchronous: wait (bounded) until a fully verified connection works.
for _ in $(seq 1 30); do
  if psql "sslmode=verify-full sslrootcert=$dir/ca.pem host=localhost port=5432 user=postgres dbname=postgres" \
    -qAtc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>/dev/null | grep -qx t; then
    ok=1
    break
  fi
  sleep 1
done
if [ -z "${ok:-}" ]; then
  echo "PostgreSQL does not accept verify-full TLS with $dir/ca.pem after 30s" >&2
  psql "sslmode=verify-full sslrootcert=$dir/ca.pem host=localhost port=5432 user=postgres dbname=postgres" -c 'SELECT 1' >&2 || true
  exit 1
fi
# And plain clients still get in.
psql "sslmode=disable host=127.0.0.1 port=5432 user=postgres dbname=postgres" -qAtc 'SELECT 1' >/dev/null
echo "PostgreSQL TLS ready: sslrootcert=$dir/ca.pem"
