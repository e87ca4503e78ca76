package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/internal/version"
	"github.com/idlegate/idlegate/policy"
)

// collector exposes the gateway's counters to Prometheus, read at scrape time.
type collector struct{ g *Gateway }

var (
	mEntries   = prometheus.NewDesc("idlegate_conntrack_entries", "Connections in the table.", nil, nil)
	mCapacity  = prometheus.NewDesc("idlegate_conntrack_capacity", "The most connections the table holds (policy capacity).", nil, nil)
	mCreated   = prometheus.NewDesc("idlegate_conntrack_created_total", "Connections created.", nil, nil)
	mDestroyed = prometheus.NewDesc("idlegate_conntrack_destroyed_total", "Connections destroyed, by reason (expired, evicted, closed, flushed, deleted).", []string{"reason"}, nil)
	mFull      = prometheus.NewDesc("idlegate_conntrack_full_total", "New connections refused because the table was full.", nil, nil)
	mKeepalive = prometheus.NewDesc("idlegate_conntrack_keepalive_probes_total", "TCP keepalive probes seen.", nil, nil)
	mEvDropped = prometheus.NewDesc("idlegate_events_dropped_total", "Events lost by slow subscribers.", nil, nil)
	mVerdicts  = prometheus.NewDesc("idlegate_packets_total", "Packets by verdict (forward, drop, reset, reject).", []string{"verdict"}, nil)
	mBytes     = prometheus.NewDesc("idlegate_bytes_total", "Bytes of the packets that arrived on a side (inside, outside), by verdict.", []string{"side", "verdict"}, nil)
	mReasons   = prometheus.NewDesc("idlegate_packet_reasons_total", "Packets by the reason of their verdict.", []string{"reason"}, nil)
	mInjected  = prometheus.NewDesc("idlegate_injected_packets_total", "Packets the gateway originated (RST, ICMP).", nil, nil)
	mNATMaps   = prometheus.NewDesc("idlegate_nat_mappings", "Live NAT mappings.", nil, nil)
	mRx        = prometheus.NewDesc("idlegate_device_rx_packets_total", "Packets read from a side's TUN.", []string{"side"}, nil)
	mTx        = prometheus.NewDesc("idlegate_device_tx_packets_total", "Packets written to a side's TUN.", []string{"side"}, nil)
	mRxBytes   = prometheus.NewDesc("idlegate_device_rx_bytes_total", "Bytes read from a side's TUN.", []string{"side"}, nil)
	mTxBytes   = prometheus.NewDesc("idlegate_device_tx_bytes_total", "Bytes written to a side's TUN.", []string{"side"}, nil)
	mWriteErr  = prometheus.NewDesc("idlegate_device_write_errors_total", "Failed writes to a side's TUN.", []string{"side"}, nil)
	mPcapErr   = prometheus.NewDesc("idlegate_pcap_write_errors_total", "Recordings (pcap) stopped by a write error such as a full disk.", nil, nil)

	descs = []*prometheus.Desc{mEntries, mCapacity, mCreated, mDestroyed, mFull, mKeepalive, mEvDropped, mVerdicts, mBytes,
		mReasons, mInjected, mNATMaps, mRx, mTx, mRxBytes, mTxBytes, mWriteErr, mPcapErr}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	es := c.g.cfg.Engine.Stats()
	t := es.Table
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(mEntries, float64(c.g.cfg.Engine.Len()))
	gauge(mCapacity, float64(c.g.cfg.Engine.Policy().Capacity))
	counter(mCreated, t.Created)
	for r, n := range t.Destroyed {
		counter(mDestroyed, n, conntrack.Reason(r).String())
	}
	counter(mFull, t.Full)
	counter(mKeepalive, t.KeepaliveProbes)
	counter(mEvDropped, es.EventsDropped)
	for v, n := range es.VerdictCounts() {
		counter(mVerdicts, n, v)
	}
	for r, n := range es.ReasonCounts() {
		counter(mReasons, n, r)
	}
	counter(mInjected, es.Injected)
	gauge(mNATMaps, float64(es.NATMaps))
	ds := c.g.Stats()
	for _, side := range []policy.Side{policy.Inside, policy.Outside} {
		for v, n := range es.Bytes[side] {
			counter(mBytes, n, side.String(), policy.Verdict(v).String())
		}
		counter(mRx, ds[side].RxPackets, side.String())
		counter(mTx, ds[side].TxPackets, side.String())
		counter(mRxBytes, ds[side].RxBytes, side.String())
		counter(mTxBytes, ds[side].TxBytes, side.String())
		counter(mWriteErr, ds[side].WriteErrors, side.String())
	}
	counter(mPcapErr, c.g.PcapWriteErrors())
}

// metricsHandler is GET /metrics: the gateway's counters, idlegate_build_info, and
// the Go runtime's and the process's standard collectors.
func (g *Gateway) metricsHandler() http.Handler {
	g.metricsOnce.Do(func() {
		v := version.Get()
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			&collector{g: g},
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "idlegate_build_info",
				Help:        "Always 1; the labels say which build of idlegate the gateway runs.",
				ConstLabels: prometheus.Labels{"version": v.Version, "goversion": v.Go, "revision": v.Revision},
			}, func() float64 { return 1 }),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
		g.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
	})
	return g.metrics
}
