# Sourced by the bench scripts that run TLS: `make_certs DIR` writes a CA
# (DIR/ca.pem) and a leaf for localhost and 127.0.0.1 signed by it
# (DIR/leaf.pem, DIR/leaf.key, and DIR/leaf.both, chain and key in one
# file, as HAProxy takes them), made for the run and valid two days.
make_certs() {
  (cd "$1" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null \
    && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -keyout leaf.key -out leaf.csr 2>/dev/null \
    && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > leaf.ext \
    && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile leaf.ext -out leaf.pem 2>/dev/null \
    && cat leaf.pem leaf.key > leaf.both)
}
