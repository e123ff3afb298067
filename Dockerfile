# syntax=docker/dockerfile:1

# One image holds three binaries: "enqueue" (migrate, pending, run, ...),
# "worker", and "demo" (setup, verify: the demo data set the seed backfills
# of backfills/ work on). docker-compose.yml picks the binary with each
# service's command.
# Validated without Docker by internal/composefile.

# ---- build -----------------------------------------------------------------
# go.mod asks for go 1.26.8: the golang:1.26 tag follows the latest 1.26.x.
FROM golang:1.26 AS build
WORKDIR /src

# Dependencies first, so that code changes do not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# Static binaries: the final image has no C library.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bin/ ./cmd/enqueue ./cmd/worker ./cmd/demo

# The backfill files. Git keeps no empty folders, so a checkout with no
# backfills yet may lack backfills/ or backfills/manual/: create them.
RUN mkdir -p /out/backfills/manual \
    && if [ -d backfills ]; then cp -R backfills/. /out/backfills/; fi

# ---- run -------------------------------------------------------------------
# No shell, no package manager; runs as uid 65532 ("nonroot"). Commands in
# docker-compose.yml are therefore exec-form argv lists, never "sh -c".
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/bin/enqueue /usr/local/bin/enqueue
COPY --from=build /out/bin/worker /usr/local/bin/worker
COPY --from=build /out/bin/demo /usr/local/bin/demo
COPY --from=build /out/backfills /app/backfills

WORKDIR /app
ENV BACKFILL_DIR=/app/backfills

# No ENTRYPOINT: the command names the binary, e.g.
#   docker compose run --rm migrate enqueue status
CMD ["enqueue", "help"]
