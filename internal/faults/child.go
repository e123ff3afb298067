package faults

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is a server the harness runs as a child process (redis-server,
// pgbouncer): started in the foreground, killed with the test process even
// when that dies without its cleanups, and stopped or killed on request.
type child struct {
	what string // for messages: "redis-server"

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// start starts cmd, unless the child runs already. The caller sets its
// output and credentials; start adds the signal that ends it with the test.
func (c *child) start(cmd *exec.Cmd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return fmt.Errorf("faults: %s is running already", c.what)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Set after a change of user, so it survives that change too.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.what, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited
	return nil
}

// waitReady polls ready every 20 ms until it succeeds, the child exits
// (logs says why), or 20 s pass.
func (c *child) waitReady(ready func() error, logs func() string) error {
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
			return fmt.Errorf("%s exited at start:\n%s", c.what, logs())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready within 20s: %v\n%s", c.what, err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig and waits for the child to exit, killing it after grace
// (0: wait as long as it takes).
func (c *child) signal(sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if grace > 0 {
		select {
		case <-exited:
			return nil
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-exited
	return nil
}
