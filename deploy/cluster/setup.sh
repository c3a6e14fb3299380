#!/usr/bin/env bash
# Makes what the cluster example needs and keeps out of git: .env (the
# master key, the database password), the nodes' configurations (the API
# token) and one TLS certificate for every node. Run it once in this
# directory; it never overwrites what it made before.
#
#   ./setup.sh [HOSTNAME]   the name clients use (default localhost)
set -euo pipefail
cd "$(dirname "$0")"
host=${1:-localhost}
umask 077

if [[ ! -e .env ]]; then
  {
    echo "IOTGATE_MASTER_KEY=$(openssl rand -hex 32)"
    echo "POSTGRES_PASSWORD=$(openssl rand -hex 16)"
    echo "IOTGATE_API_TOKEN=$(openssl rand -hex 24)"
  } >.env
  echo "wrote .env (the master key seals every device secret: back it up)"
fi
token=$(sed -n 's/^IOTGATE_API_TOKEN=//p' .env)

# The containers run as uid 65532, not as you: what they read must be
# readable by others (or chown it to 65532).
umask 022
ips=(172.28.0.11 172.28.0.12 172.28.0.13)
for i in 1 2 3; do
  [[ -e node-$i.yaml ]] && continue
  sed -e "s/@NODE@/node-$i/" -e "s/@IP@/${ips[i-1]}/" -e "s/@API_TOKEN@/$token/" node.yaml.in >node-$i.yaml
  echo "wrote node-$i.yaml"
done

if [[ ! -e tls/server.pem ]]; then
  mkdir -p tls
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=iotgate cluster example CA" -keyout tls/ca.key -out tls/ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$host" -keyout tls/server.key -out tls/server.csr 2>/dev/null
  san="DNS:localhost,IP:127.0.0.1,IP:::1"
  [[ $host == localhost ]] || san="DNS:$host,$san"
  openssl x509 -req -in tls/server.csr -CA tls/ca.pem -CAkey tls/ca.key -CAcreateserial -days 825 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out tls/server.pem 2>/dev/null
  rm -f tls/server.csr tls/ca.srl
  chmod 0600 tls/ca.key
  chmod 0644 tls/server.key   # read by uid 65532 in the containers
  echo "wrote tls/ (clients trust tls/ca.pem; certificate for $san)"
fi
