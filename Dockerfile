# syntax=docker/dockerfile:1
#
# The iotgate container image: a static binary on distroless, run as a
# non-root user, its state in the /data volume.
#
#   docker build -t iotgate \
#     --build-arg IOTGATE_VERSION=$(git describe --tags --always) \
#     --build-arg IOTGATE_COMMIT=$(git rev-parse HEAD)$(git diff --quiet || echo -dirty) .
#   docker run -d --name iotgate -v iotgate-data:/data \
#     -p 8443:8443 -p 8883:8883 -p 5684:5684/udp iotgate
#
# README "Packaging and deployment" has the rest (ports, configuration,
# the master key).

# The Go release go.mod names.
FROM golang:1.26.8-bookworm AS builder
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The build context has no .git (.dockerignore): the version and commit
# are stamped at link time instead (iotgate version prints them).
ARG IOTGATE_VERSION=""
ARG IOTGATE_COMMIT=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.stampedVersion=${IOTGATE_VERSION} -X main.stampedCommit=${IOTGATE_COMMIT}" \
      -o /out/iotgate ./cmd/iotgate \
 && mkdir -p /out/data

# distroless/static: CA certificates (forwarding to HTTPS endpoints), time
# zone data, /etc/passwd with nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/iotgate /iotgate
COPY deploy/docker/iotgate.yaml /etc/iotgate/iotgate.yaml
# Owned by the user the server runs as, so that a new named volume
# mounted here inherits it.
COPY --from=builder --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
# REST API: HTTP, HTTPS. MQTT: plain, TLS. LwM2M: CoAP (NoSec), CoAP over DTLS.
EXPOSE 8080/tcp 8443/tcp 1883/tcp 8883/tcp 5683/udp 5684/udp
# /healthz over the API's plain-HTTP listener, inside the container (no
# curl in the image: the binary asks it itself).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/iotgate", "health", "-url", "http://127.0.0.1:8080/healthz", "-timeout", "3s"]
ENTRYPOINT ["/iotgate"]
CMD ["serve", "-config", "/etc/iotgate/iotgate.yaml"]
