package batches

import "context"

type actorKey struct{}

// WithActor returns ctx carrying who acts: user@host of a command, the web
// page and its client's address, or a worker. The changes of a run's state
// made under ctx are recorded in backfill_events as done by actor.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorOf returns who acts under ctx, or fallback when nobody was named.
func ActorOf(ctx context.Context, fallback string) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return fallback
}
