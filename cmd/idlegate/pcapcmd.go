package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/control"
)

func newPcapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "pcap",
		Short: "Start or stop recording what crosses a running gateway, or say what is recorded",
		Example: `  sudo idlegate pcap start /tmp/run.pcapng
  sudo idlegate pcap start /tmp/pg.pcapng -p tcp --dport 5432
  sudo idlegate pcap status
  sudo idlegate pcap stop`,
	}
	c.AddCommand(newPcapStartCmd(), newPcapStopCmd(), newPcapStatusCmd())
	return c
}

// pcapFilterFlags are the filter flags a capture takes: protocol, addresses, ports.
func pcapFilterFlags(c *cobra.Command, f *control.Filter) {
	filterFlags(c, f, false)
	for _, name := range []string{"state", "status", "nat", "id"} {
		c.Flags().MarkHidden(name)
	}
}

func newPcapStartCmd() *cobra.Command {
	var name string
	var force bool
	var f control.Filter
	c := &cobra.Command{
		Use:   "start FILE [FILTER]",
		Short: "Record to a new pcapng file, mode 0600 (each packet's comment gives its verdict)",
		Long: `Record what crosses the gateway to FILE, a new pcapng file of mode 0600 (every payload
is in it). A symbolic link or a file that is not regular is refused; so is an existing file,
unless --force. A recording in progress is replaced; what it holds is printed.

A filter (-p, -s, -d, --sport, --dport, as ct list takes them) records only the flows it
picks, both directions, as "tcp port 5432" would: a packet of a tracked connection by the
connection's tuples, any other by its own; the RSTs and ICMP the gateway sends for a packet
go with it.`,
		Example: `  sudo idlegate pcap start /tmp/run.pcapng
  sudo idlegate pcap start /tmp/pg.pcapng -p tcp --dport 5432
  tshark -r /tmp/run.pcapng -T fields -e frame.comment`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.CheckPacket(); err != nil {
				return usageError{err}
			}
			path := absPath(args[0])
			ans, err := ask(name, func(ctx context.Context, cl *labClient) (control.PcapAnswer, error) {
				return cl.StartPcap(ctx, path, force, f)
			})
			if err != nil {
				return err
			}
			if ans.Ended != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "previous recording: %s\n", ans.Ended)
			}
			if ans.Filter != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "recording to %s (only %s)\n", path, ans.Filter)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "recording to %s\n", path)
			}
			return nil
		},
	}
	nameFlag(c, &name)
	c.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	pcapFilterFlags(c, &f)
	return c
}

func newPcapStopCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:     "stop",
		Short:   "Stop recording and close the file",
		Example: "  sudo idlegate pcap stop",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ans, err := ask(name, func(ctx context.Context, cl *labClient) (control.PcapAnswer, error) { return cl.StopPcap(ctx) })
			if err != nil {
				return err
			}
			switch e := ans.Ended; {
			case e == nil:
				fmt.Fprintln(cmd.OutOrStdout(), "no recording was running")
			case e.Error != "":
				return errors.New(e.String()) // exit 1: the recording did not hold everything
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "recording stopped: %s\n", e)
			}
			return nil
		},
	}
	nameFlag(c, &name)
	return c
}

func newPcapStatusCmd() *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:     "status",
		Short:   "Say what is being recorded: the file, its filter, packets so far",
		Example: "  sudo idlegate pcap status\n  sudo idlegate pcap status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			p, err := ask(name, func(ctx context.Context, cl *labClient) (control.PcapInfo, error) { return cl.Pcap(ctx) })
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSONOut(w, p)
			}
			if p.Recording {
				filter := "every packet"
				if p.Filter != "" {
					filter = "only " + p.Filter
				}
				fmt.Fprintf(w, "recording to %s since %s (%s ago): %s, %s so far\n", p.Path, p.Started.Local().Format("15:04:05"),
					time.Since(p.Started).Round(time.Second), filter, plural(p.Packets, "packet"))
			} else {
				fmt.Fprintln(w, "not recording")
			}
			if p.Failed != nil {
				fmt.Fprintf(w, "last recording: %s\n", p.Failed)
			}
			return nil
		},
	}
	nameFlag(c, &name)
	outputFlag(c, &out)
	return c
}
