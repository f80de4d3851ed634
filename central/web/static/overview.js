/* Overview: every hall on one screen; polls GET /api/v1/overview. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var EVERY_S = 15;
  var ALERTS = ['yellow_light', 'red_light', 'yellow_card', 'red_card', 'supervision_letter'];

  function kpi(id, label, value, sub, kind) {
    return el('div', { class: 'kpi ' + (kind || ''), id: id },
      el('div', { class: 'kpi-label' }, label),
      el('div', { class: 'kpi-value' }, value),
      sub ? el('div', { class: 'kpi-sub' }, sub) : null);
  }

  function renderKpis(data) {
    var box = H.clear(document.getElementById('kpis'));
    box.appendChild(kpi('kpi-halls', t('overview.halls'), data.halls.length));
    box.appendChild(kpi('kpi-offline', t('overview.offline'), data.halls_offline, null,
      data.halls_offline ? 'bad' : 'good'));
    // a part the caller's role does not reach comes as null (technicians: no scores, cases)
    if (data.satisfaction_today !== null) {
      box.appendChild(kpi('kpi-satisfaction', t('overview.satisfaction'),
        H.pct(data.satisfaction_today), H.frac(data.satisfaction_today)));
      box.appendChild(kpi('kpi-evaluation-rate', t('overview.evaluation_rate'),
        H.pct(data.evaluation_rate_today), H.frac(data.evaluation_rate_today)));
    }
    // tier bridges (县/市 上联) down: their halls fall silent, which is not idleness
    if (data.links_down && data.links_down.length) {
      box.appendChild(kpi('kpi-links-down', t('overview.links_down'), data.links_down.length,
        data.links_down.map(function (l) {
          return t('overview.link_down', { bridge: l.bridge, time: H.fmtTime(l.since) });
        }).join('；'), 'bad'));
    }
    if (data.suspicious_today !== null) {
      box.appendChild(kpi('kpi-suspicious', t('overview.suspicious'), data.suspicious_today,
        null, data.suspicious_today ? 'warn' : ''));
    }
    if (data.lights === null) { return; }
    box.appendChild(el('div', { class: 'kpi lights-kpi', id: 'kpi-lights' },
      el('div', { class: 'kpi-label' }, t('overview.open_cases')),
      el('div', { class: 'light-row' }, ALERTS.map(function (s) {
        return badge(s, data.lights[s]);
      }))));
  }

  function badge(stage, n) {
    return el('span', { class: 'light light-' + stage + (n ? '' : ' zero'),
      title: t('light.' + stage) }, el('span', { class: 'light-dot' }),
      el('span', { class: 'light-name' }, t('light.' + stage)),
      el('span', { class: 'light-n' }, n));
  }

  function hallCard(h) {
    var gw;
    if (h.gateways === null) {
      gw = null;
    } else if (h.gateways === 0) {
      gw = el('span', { class: 'gw-state none' }, t('overview.no_gateway'));
    } else if (h.offline) {
      gw = el('span', { class: 'gw-state offline' }, t('overview.gateway_offline'));
    } else {
      gw = el('span', { class: 'gw-state online' },
        t('overview.gateways', { online: h.gateways_online, total: h.gateways }));
    }
    // the wall's state rule: never green beside a 监察建议书 or with no gateway reporting
    var card = el('article', { class: 'hall-card' + (h.offline ? ' offline' : '') +
      (h.state ? ' state-' + h.state : ''),
      dataset: { hall: h.hall } },
      el('header', null, el('h2', null, el('a', { href: H.withQuery('/analysis', { hall: h.hall }) },
        H.hallLabel(h.hall, h.hall_name))), gw),
      h.lights === null ? null : el('div', { class: 'light-row' },
        ALERTS.map(function (s) { return badge(s, h.lights[s]); })),
      h.satisfaction_today === null ? null : el('dl', { class: 'rates' },
        el('div', null, el('dt', null, t('ind.satisfaction_rate')),
          el('dd', { class: 'satisfaction' }, H.rate(h.satisfaction_today))),
        el('div', null, el('dt', null, t('ind.evaluation_rate')),
          el('dd', { class: 'evaluation-rate' }, H.rate(h.evaluation_rate_today)))),
      el('footer', null,
        h.evaluations_today === null ? null :
          el('span', null, t('overview.evaluations', { n: h.evaluations_today })),
        h.suspicious_today === null ? null : el('span', { class: 'suspicious' +
          (h.suspicious_open ? ' warn' : '') },
          t('overview.suspicious.hall', { n: h.suspicious_today, open: h.suspicious_open })),
        h.last_batch_at ? el('span', { class: 'last-batch' },
          t('overview.last_batch', { time: H.fmtTime(h.last_batch_at) })) : null));
    return card;
  }

  function renderHalls(data) {
    var grid = H.clear(document.getElementById('hall-grid'));
    if (!data.halls.length) {
      grid.appendChild(el('p', { class: 'no-data' }, t('common.nodata')));
      return;
    }
    data.halls.forEach(function (h) { grid.appendChild(hallCard(h)); });
  }

  function renderCharts(data) {
    var halls = data.halls.map(function (h) { return h.hall_name || h.hall; });
    var ink = '#333';
    var textStyle = { fontFamily: H.FONT, fontSize: 13, color: ink };
    ['chart-lights', 'chart-satisfaction'].forEach(function (id) {  // parts out of reach
      var box = document.getElementById(id);
      if (box) { box.closest('figure').hidden = (id === 'chart-lights' ? data.lights :
        data.satisfaction_today) === null; }
    });
    var lights = data.lights === null ? null : H.chart('chart-lights');
    if (lights) {
      lights.setOption({
        textStyle: textStyle, animation: false,
        tooltip: { trigger: 'axis' },
        legend: { top: 0, textStyle: textStyle },
        grid: { left: 48, right: 16, top: 40, bottom: 32 },
        xAxis: { type: 'category', data: halls, axisLabel: textStyle },
        yAxis: { type: 'value', minInterval: 1, axisLabel: textStyle },
        series: ALERTS.map(function (s) {
          return { name: t('light.' + s), type: 'bar', stack: 'lights',
            itemStyle: { color: H.COLORS[s] },
            data: data.halls.map(function (h) { return h.lights[s]; }) };
        })
      }, true);
    }
    var sat = data.satisfaction_today === null ? null : H.chart('chart-satisfaction');
    if (sat) {
      sat.setOption({
        textStyle: textStyle, animation: false,
        tooltip: { trigger: 'axis', valueFormatter: function (v) {
          return v === null || v === undefined ? t('common.nodata') : v + '%'; } },
        grid: { left: 48, right: 16, top: 24, bottom: 32 },
        xAxis: { type: 'category', data: halls, axisLabel: textStyle },
        yAxis: { type: 'value', min: 0, max: 100, axisLabel: { formatter: '{value}%',
          fontFamily: H.FONT, fontSize: textStyle.fontSize, color: ink } },
        series: [{ name: t('ind.satisfaction_rate'), type: 'bar', itemStyle: { color: '#2f9e44' },
          label: { show: true, position: 'top', formatter: function (p) {
            return p.value === null || p.value === undefined ? '—' : p.value + '%'; },
          fontFamily: H.FONT, fontSize: textStyle.fontSize, color: ink, textBorderWidth: 0 },
          data: data.halls.map(function (h) {
            var v = h.satisfaction_today.value;
            return v === null ? null : Math.round(v * 1000) / 10;
          }) }]
      }, true);
    }
  }

  var timer = null;

  function load() {
    H.api('/api/v1/overview').then(function (data) {
      renderKpis(data);
      renderHalls(data);
      renderCharts(data);
      if (data.figures_problem) {
        H.notice(data.figures_problem, 'warn');
      } else {
        H.notice(data.correlated ? '' : t('common.nodata.correlation'), 'info');
      }
      document.getElementById('status-line').textContent =
        t('common.updated', { time: H.fmtClock(new Date(data.generated_at)) }) + ' · ' +
        t('common.refresh_every', { seconds: EVERY_S });
      document.body.dataset.loaded = '1';
    }).catch(function (error) {
      H.notice(H.failure(error), 'error');
    }).then(function () {
      clearTimeout(timer);
      timer = setTimeout(load, EVERY_S * 1000);
    });
  }

  load();
})();
