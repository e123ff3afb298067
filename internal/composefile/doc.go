// Package composefile holds no code: its tests check the repository's
// docker-compose.yml and Dockerfile without Docker.
//
// They parse docker-compose.yml and check its structure (services, one-shot
// steps, depends_on conditions, healthchecks, a scalable worker, URLs that
// point at the right services), read the Dockerfile's text, and then run
// every demo, enqueue and worker command of the compose file, argv for argv,
// in dependency order and with each service's own environment (PGOPTIONS
// included), against binaries built from this module and a fresh test
// database, as "docker compose up" would. A command or flag that the
// binaries do not have therefore fails the tests.
//
// Commands of our image must be exec-form lists (["enqueue", "migrate"]):
// the image is distroless and has no shell.
package composefile
