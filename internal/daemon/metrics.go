package daemon

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves the status counters in the Prometheus text format. The
// values are read from the Controller's status at scrape time, so there is one
// source of truth for `hermes-netd status` and /metrics.
func metricsHandler(c Controller) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statusCollector{c})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

var (
	descRequests = prometheus.NewDesc("hermes_netd_requests_total",
		"Requests recorded by the proxy.", nil, nil)
	descRefused = prometheus.NewDesc("hermes_netd_refused_total",
		"Refused connections and requests, by reason.", []string{"reason"}, nil)
	descInjected = prometheus.NewDesc("hermes_netd_injected_total",
		"Requests forwarded with a provider's key, by provider.", []string{"provider"}, nil)
	descDecisions = prometheus.NewDesc("hermes_netd_decisions_total",
		"Decision records, by decision.", []string{"decision"}, nil)
	descAttached = prometheus.NewDesc("hermes_netd_attached_namespaces",
		"Network namespaces attached now.", nil, nil)
	descConns = prometheus.NewDesc("hermes_netd_connections_total",
		"Connections accepted from an attached namespace since it was attached.",
		[]string{"netns"}, nil)
	descKeyLoaded = prometheus.NewDesc("hermes_netd_provider_key_loaded",
		"1 when the provider has a usable key, else 0.", []string{"provider"}, nil)
)

type statusCollector struct{ c Controller }

// Describe lists every descriptor up front: label values come and go between
// scrapes, which DescribeByCollect would not see.
func (s statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descRefused, descInjected,
		descDecisions, descAttached, descConns, descKeyLoaded} {
		ch <- d
	}
}

func (s statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.c.Status(context.Background())
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	counter(descRequests, st.Counters.Requests)
	for k, v := range st.Counters.Refused {
		counter(descRefused, v, k)
	}
	for k, v := range st.Counters.Injected {
		counter(descInjected, v, k)
	}
	for k, v := range st.Counters.Decisions {
		counter(descDecisions, v, k)
	}
	ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue,
		float64(len(st.Attached)))
	for _, a := range st.Attached {
		counter(descConns, a.Connections, a.Spec)
	}
	for _, p := range st.Providers {
		loaded := 0.0
		if p.Loaded {
			loaded = 1
		}
		ch <- prometheus.MustNewConstMetric(descKeyLoaded, prometheus.GaugeValue, loaded,
			p.Name)
	}
}
