# One image holding every Spillway binary (spillway, spillway-manager,
# spillway-gateway, spillway-scheduler, spillway-metrics-adapter, ...);
# each Deployment picks its binary with `command`.
#   docker build -t spillway .
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN go mod download
COPY apis/ apis/
COPY cmd/ cmd/
COPY pkg/ pkg/
RUN mkdir /out && go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/spillway"]
