# The idlegate image: one static binary on an empty filesystem.
#
#   docker build -t idlegate .
#   docker run --rm idlegate version
#
# As a helper container that wedges two containers of the same host (see
# docs/containers.md): it needs the host's pids (to find a container's network
# namespace from its pid), the daemon's socket (it asks the API: there is no
# docker CLI in the image), CAP_NET_ADMIN and /dev/net/tun (TUNs and routes),
# CAP_SYS_ADMIN (to enter a namespace) and CAP_SYS_PTRACE (to open another
# process's namespace), and /run/idlegate shared with the host so that
# `idlegate ct list` and `wedge down` there reach it:
#
#   docker run -d --name wedge --pid=host --privileged --network none \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /run/idlegate:/run/idlegate \
#     idlegate wedge docker:app docker:db --profile aws-nat-gateway --time-scale 0.01
#
# The test suite builds the same image offline (no registry) from the static
# binary with `docker import` (cmd/idlegate/wedge_docker_test.go).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/idlegate ./cmd/idlegate

FROM scratch
COPY --from=build /out/idlegate /idlegate
ENTRYPOINT ["/idlegate"]
CMD ["--help"]
