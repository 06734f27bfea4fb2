/*!
 * kefu help widget — search-as-you-type for the Lanyun (澜云) help center.
 *
 * Embed with one element and one script tag:
 *   <div id="kefu-help"></div>
 *   <script src="https://kefu.example/widget.js" data-target="#kefu-help" data-lang="zh"></script>
 *
 * Script attributes (all optional):
 *   data-target      CSS selector of the element to mount into (default "#kefu-help")
 *   data-lang        UI language "zh" | "en" (default: <html lang>, then navigator.language)
 *   data-api         API base URL (default: the origin this script was loaded from)
 *   data-product     restrict search to one product (e.g. "billing")
 *   data-category    restrict search to one support category (e.g. "network")
 *   data-search-lang restrict search to articles in one language ("zh" | "en")
 *   data-limit       results per page (default 5; "show more" fetches the next page)
 *   data-ticket-url  where the "open a ticket" hint points (default: mailto:support@lanyun.example)
 *   data-placeholder custom placeholder text
 *
 * Any element on the page with data-kefu-query="退款" fills the widget and searches when clicked.
 * JS API: window.Kefu.mount(target, options), window.Kefu.get(target).search(text),
 *         window.Kefu.feedback({query, articleId, lang, api}) -> Element (helpful / not helpful bar).
 *
 * Security: only the server's `snippet` field is parsed as HTML, and even then only text and
 * <em> survive; every other field is inserted with textContent.
 */
(() => {
  'use strict';

  const SCRIPT = document.currentScript;
  const DEBOUNCE_MS = 120;

  const I18N = {
    zh: {
      label: '搜索帮助文档',
      placeholder: '输入您的问题，例如：如何申请退款',
      clear: '清除搜索',
      articles: '帮助文章',
      suggestions: '搜索建议',
      total: (n) => `共 ${n} 篇`,
      relaxed: '没有文章包含引号中的完整短语，以下结果包含其中的词',
      loading: '正在搜索…',
      empty: '没有找到相关文章',
      emptyHint: '换个说法或更短的关键词试试，也可以',
      openTicket: '提交工单',
      emptyHint2: '，工程师会尽快联系您。',
      error: '搜索服务暂时不可用，请稍后再试。',
      announce: (n) => (n ? `找到 ${n} 篇相关文章，使用上下方向键浏览` : '没有找到相关文章'),
      more: '显示更多结果',
      articleQ: '这篇文章有帮助吗？',
      resultsQ: '这些结果有帮助吗？',
      yes: '有帮助',
      no: '没帮助',
      thanks: '谢谢反馈！',
      feedbackError: '提交失败，请重试',
      keys: '↑↓ 选择　Enter 打开　Esc 关闭',
      intro: '概述',
      langBadge: { zh: '中文', en: 'EN' },
      products: {
        billing: '费用与发票', account: '账号', compute: '云服务器', network: '网络',
        storage: '存储', security: '安全', domain: '域名', cdn: 'CDN', monitoring: '云监控',
        support: '服务支持', database: '数据库', ssl: 'SSL 证书',
      },
    },
    en: {
      label: 'Search the help center',
      placeholder: 'Ask a question, e.g. how do I get a refund',
      clear: 'Clear search',
      articles: 'Articles',
      suggestions: 'Suggestions',
      total: (n) => `${n} found`,
      relaxed: 'No article has the exact quoted phrase; these results have its words',
      loading: 'Searching…',
      empty: 'No articles found',
      emptyHint: 'Try different or fewer words, or ',
      openTicket: 'open a ticket',
      emptyHint2: ' and an engineer will get back to you.',
      error: 'Search is temporarily unavailable. Please try again shortly.',
      announce: (n) => (n ? `${n} articles found, use up and down arrows to browse` : 'No articles found'),
      more: 'Show more results',
      articleQ: 'Was this article helpful?',
      resultsQ: 'Were these results helpful?',
      yes: 'Yes',
      no: 'No',
      thanks: 'Thanks for your feedback!',
      feedbackError: 'Could not send, please try again',
      keys: '↑↓ to navigate · Enter to open · Esc to close',
      intro: 'Overview',
      langBadge: { zh: '中文', en: 'EN' },
      products: {
        billing: 'Billing', account: 'Account', compute: 'Compute', network: 'Networking',
        storage: 'Storage', security: 'Security', domain: 'Domains', cdn: 'CDN',
        monitoring: 'Monitoring', support: 'Support', database: 'Databases', ssl: 'SSL certificates',
      },
    },
  };

  // ---------------------------------------------------------------- helpers

  function pickLang(explicit) {
    const cand = [explicit, document.documentElement.getAttribute('lang'), navigator.language];
    for (const c of cand) {
      if (!c) continue;
      const l = String(c).toLowerCase();
      if (l.startsWith('zh')) return 'zh';
      if (l.startsWith('en')) return 'en';
    }
    return 'zh';
  }

  function defaultApiBase() {
    try {
      if (SCRIPT && SCRIPT.src) return new URL(SCRIPT.src, location.href).origin;
    } catch (_) { /* fall through */ }
    return location.origin;
  }

  function trimSlash(s) {
    return String(s || '').replace(/\/+$/, '');
  }

  /** Encode an article id for a URL path, keeping its slashes: "a b/c.md" -> "a%20b/c.md". */
  function encodeId(id) {
    return String(id).split('/').map(encodeURIComponent).join('/');
  }

  function articleHref(api, id, query, anchor) {
    let href = `${api}/kb/${encodeId(id)}`;
    if (query) href += `?q=${encodeURIComponent(query)}`;
    if (anchor) href += `#${encodeURIComponent(anchor)}`;
    return href;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /**
   * Turn the server's snippet (HTML-escaped text with <em> marks) into DOM nodes.
   * The snippet is parsed inside an inert <template> (no scripts run, no resources load) and
   * rebuilt keeping only text and <em>: even a server escaping bug cannot inject markup.
   */
  function snippetNodes(html) {
    const tpl = document.createElement('template');
    tpl.innerHTML = String(html || '');
    const out = document.createDocumentFragment();
    const walk = (src, dst) => {
      for (const n of src.childNodes) {
        if (n.nodeType === Node.TEXT_NODE) dst.append(document.createTextNode(n.nodeValue));
        else if (n.nodeType === Node.ELEMENT_NODE) {
          if (n.localName === 'em' || n.localName === 'mark' || n.localName === 'b') {
            const em = document.createElement('em');
            walk(n, em);
            dst.append(em);
          } else if (n.localName !== 'script' && n.localName !== 'style' && n.localName !== 'template') {
            walk(n, dst);
          }
        }
      }
    };
    walk(tpl.content, out);
    return out;
  }

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function fetchJSON(url, init) {
    const res = await fetch(url, { ...init, headers: { accept: 'application/json', ...(init && init.headers) } });
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) {
      const err = body && body.error;
      throw new ApiError((err && err.message) || `HTTP ${res.status}`, res.status, err && err.code);
    }
    return body;
  }

  /** Fire-and-forget event that survives page navigation (keepalive fetch, sendBeacon fallback). */
  function sendEvent(api, payload) {
    const url = `${api}/v1/feedback`;
    const body = JSON.stringify(payload);
    try {
      fetch(url, {
        method: 'POST', keepalive: true, body,
        headers: { 'content-type': 'application/json' },
        credentials: 'omit', mode: 'cors',
      }).catch(() => {});
      return true;
    } catch (_) {
      try {
        return navigator.sendBeacon(url, new Blob([body], { type: 'application/json' }));
      } catch (_e) {
        return false;
      }
    }
  }

  function postFeedback(api, payload) {
    return fetchJSON(`${api}/v1/feedback`, {
      method: 'POST', body: JSON.stringify(payload),
      headers: { 'content-type': 'application/json' }, credentials: 'omit',
    });
  }

  // ---------------------------------------------------------------- styles (injected once)

  const CSS = `
.kefu-root{--kefu-brand:#1456f0;--kefu-brand-dark:#0c3fb8;--kefu-brand-soft:#eaf1ff;--kefu-text:#1d2433;
 --kefu-muted:#5f6b7e;--kefu-border:#d5dbe6;--kefu-bg:#fff;--kefu-hl:#fff3c4;--kefu-radius:12px;
 position:relative;width:100%;max-width:100%;box-sizing:border-box;color:var(--kefu-text);text-align:left;
 font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI","PingFang SC","Hiragino Sans GB","Microsoft YaHei",
 "Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei",Roboto,"Helvetica Neue",Arial,sans-serif;
 -webkit-font-smoothing:antialiased}
.kefu-root *,.kefu-root *::before,.kefu-root *::after{box-sizing:border-box}
.kefu-sr{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
.kefu-box{position:relative;display:flex;align-items:center;background:var(--kefu-bg);border:1.5px solid var(--kefu-border);
 border-radius:var(--kefu-radius);box-shadow:0 1px 2px rgba(16,24,40,.06);transition:border-color .15s,box-shadow .15s}
.kefu-box:focus-within{border-color:var(--kefu-brand);box-shadow:0 0 0 4px rgba(20,86,240,.14)}
.kefu-icon{flex:none;width:20px;height:20px;margin-left:14px;color:var(--kefu-muted)}
.kefu-input{flex:1;min-width:0;height:50px;padding:0 10px 0 10px;border:0;outline:0;background:transparent;
 font:inherit;font-size:16px;color:inherit;appearance:none;-webkit-appearance:none}
.kefu-input::placeholder{color:#8b95a7}
.kefu-spinner{flex:none;width:16px;height:16px;margin-right:6px;border:2px solid var(--kefu-brand-soft);
 border-top-color:var(--kefu-brand);border-radius:50%;animation:kefu-spin .7s linear infinite;visibility:hidden}
.kefu-root[data-kefu-state="loading"] .kefu-spinner{visibility:visible}
@keyframes kefu-spin{to{transform:rotate(360deg)}}
.kefu-clear{flex:none;width:32px;height:32px;margin-right:8px;border:0;border-radius:50%;background:transparent;
 color:var(--kefu-muted);font-size:20px;line-height:1;cursor:pointer}
.kefu-clear:hover,.kefu-clear:focus-visible{background:#eef1f6;color:var(--kefu-text);outline:0}
.kefu-panel{position:absolute;z-index:2147483000;left:0;right:0;top:calc(100% + 6px);background:var(--kefu-bg);
 border:1px solid var(--kefu-border);border-radius:var(--kefu-radius);box-shadow:0 12px 32px rgba(16,24,40,.16);
 max-height:min(70vh,560px);overflow:auto;overscroll-behavior:contain}
.kefu-panel[hidden]{display:none}
.kefu-list{padding:6px}
.kefu-list:empty{display:none}
.kefu-group+.kefu-group{border-top:1px solid #edf0f5;margin-top:4px;padding-top:4px}
.kefu-relaxed{padding:0 10px 6px;font-size:12px;color:var(--kefu-muted)}
.kefu-group-label{display:flex;justify-content:space-between;padding:8px 10px 4px;font-size:12px;font-weight:600;
 letter-spacing:.02em;color:var(--kefu-muted)}
.kefu-result,.kefu-suggestion{display:block;padding:10px 12px;border-radius:8px;color:inherit;text-decoration:none;cursor:pointer}
.kefu-result[aria-selected="true"],.kefu-suggestion[aria-selected="true"]{background:var(--kefu-brand-soft);
 box-shadow:inset 3px 0 0 var(--kefu-brand)}
.kefu-result:hover,.kefu-suggestion:hover{background:#f3f6fb}
.kefu-result-title{display:block;font-weight:600;font-size:15px;color:var(--kefu-brand-dark);overflow-wrap:anywhere}
.kefu-result-meta{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:2px;font-size:12.5px;color:var(--kefu-muted)}
.kefu-tag{display:inline-block;padding:0 6px;border-radius:4px;background:#eef1f6;color:#3f4a5c;font-size:12px;line-height:18px}
.kefu-snippet{display:block;margin-top:4px;font-size:13.5px;color:#3a4354;overflow-wrap:anywhere;
 display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}
.kefu-snippet em,.kefu-feedback em{font-style:normal;font-weight:600;color:var(--kefu-text);background:var(--kefu-hl);
 border-radius:3px;padding:0 1px}
.kefu-suggestion{display:flex;align-items:center;gap:10px;padding:8px 12px}
.kefu-suggestion svg{flex:none;width:16px;height:16px;color:#8b95a7}
.kefu-suggestion span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.kefu-status{padding:18px 16px;color:var(--kefu-muted);font-size:14px}
.kefu-status:empty{display:none}
.kefu-status strong{display:block;margin-bottom:4px;color:var(--kefu-text);font-size:15px}
.kefu-status a{color:var(--kefu-brand);font-weight:600}
.kefu-footer{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:8px;padding:8px 12px;
 border-top:1px solid #edf0f5;background:#fafbfd;border-radius:0 0 var(--kefu-radius) var(--kefu-radius);font-size:12.5px;color:var(--kefu-muted)}
.kefu-footer:empty{display:none}
.kefu-more{border:0;background:none;color:var(--kefu-brand);font:inherit;font-weight:600;cursor:pointer;padding:4px 0}
.kefu-keys{white-space:nowrap}
@media (pointer:coarse),(max-width:520px){.kefu-keys{display:none}}
.kefu-feedback{display:flex;flex-wrap:wrap;align-items:center;gap:8px;font-size:13.5px;color:var(--kefu-muted)}
.kefu-feedback-btn{display:inline-flex;align-items:center;gap:5px;height:30px;padding:0 12px;border:1px solid var(--kefu-border,#d5dbe6);
 border-radius:999px;background:#fff;color:var(--kefu-text,#1d2433);font:inherit;font-size:13px;cursor:pointer;transition:all .15s}
.kefu-feedback-btn:hover:not(:disabled){border-color:var(--kefu-brand,#1456f0);color:var(--kefu-brand,#1456f0)}
.kefu-feedback-btn:focus-visible{outline:2px solid var(--kefu-brand,#1456f0);outline-offset:2px}
.kefu-feedback-btn:disabled{opacity:.55;cursor:default}
.kefu-thumb{width:15px;height:15px;flex:none}
.kefu-down .kefu-thumb{transform:rotate(180deg)}
.kefu-thanks{color:#127a3e;font-weight:600}
.kefu-feedback-error{color:#c4281c}
@media (max-width:520px){.kefu-input{height:46px}.kefu-panel{max-height:75vh}.kefu-result{padding:10px}}
@media (prefers-reduced-motion:reduce){.kefu-spinner{animation:none}}
`;

  function injectStyles() {
    if (document.getElementById('kefu-widget-style')) return;
    const style = document.createElement('style');
    style.id = 'kefu-widget-style';
    style.textContent = CSS;
    (document.head || document.documentElement).append(style);
  }

  const ICON_SEARCH = '<svg class="kefu-icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" aria-hidden="true"><circle cx="11" cy="11" r="7"/><path d="m20 20-3.5-3.5"/></svg>';
  const ICON_QUERY = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" aria-hidden="true"><circle cx="11" cy="11" r="7"/><path d="m20 20-3.5-3.5"/></svg>';
  const ICON_DOC = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" aria-hidden="true"><path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4M9 12h6M9 16h6"/></svg>';

  const ICON_THUMB = '<svg class="kefu-thumb" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" stroke-linecap="round" aria-hidden="true"><path d="M7 10v11H3V10z"/><path d="M7 10l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.1 21H7"/></svg>';

  function svg(markup) {
    const t = document.createElement('template');
    t.innerHTML = markup; // constant markup only
    return t.content.firstChild;
  }

  // ---------------------------------------------------------------- feedback bar

  /**
   * A "was this helpful? 👍 👎" bar. Sends {query, article_id, event} to /v1/feedback and then
   * shows a thank-you note. Returns the element.
   */
  const sentFeedback = new Set();

  function feedbackBar(opts) {
    const lang = pickLang(opts.lang);
    const t = I18N[lang];
    const api = trimSlash(opts.api !== undefined ? opts.api : defaultApiBase());
    const sentKey = `${opts.query || ''}\u0000${opts.articleId}`;
    const wrap = el('div', { class: 'kefu-feedback', 'data-testid': 'kefu-feedback', role: 'group', 'aria-label': opts.question || t.articleQ });
    const thanks = () => el('span', { class: 'kefu-thanks', role: 'status', 'data-testid': 'kefu-thanks', text: `✓ ${t.thanks}` });
    if (sentFeedback.has(sentKey)) {
      wrap.append(thanks());
      return wrap;
    }
    const q = el('span', { class: 'kefu-feedback-q', text: opts.question || t.articleQ });
    // Thumb icons are inline SVG (not emoji) so they render even where no emoji font is installed.
    const yes = el('button', { type: 'button', class: 'kefu-feedback-btn', 'data-testid': 'kefu-helpful', 'aria-label': `👍 ${t.yes}`, title: `👍 ${t.yes}` },
      svg(ICON_THUMB), t.yes);
    const no = el('button', { type: 'button', class: 'kefu-feedback-btn kefu-down', 'data-testid': 'kefu-not-helpful', 'aria-label': `👎 ${t.no}`, title: `👎 ${t.no}` },
      svg(ICON_THUMB), t.no);
    const msg = el('span', { class: 'kefu-feedback-error', role: 'alert' });
    wrap.append(q, yes, no, msg);
    const send = async (event) => {
      yes.disabled = no.disabled = true;
      msg.textContent = '';
      try {
        await postFeedback(api, { query: String(opts.query || ''), article_id: String(opts.articleId), event });
        sentFeedback.add(sentKey);
        wrap.replaceChildren(thanks());
        wrap.dataset.kefuSent = event;
        if (typeof opts.onSent === 'function') opts.onSent(event);
      } catch (e) {
        yes.disabled = no.disabled = false;
        msg.textContent = t.feedbackError;
      }
    };
    yes.addEventListener('click', () => send('helpful'));
    no.addEventListener('click', () => send('not_helpful'));
    return wrap;
  }

  // ---------------------------------------------------------------- the widget

  let instanceCounter = 0;
  const instances = new Map();

  class Widget {
    constructor(root, options) {
      this.host = root;
      this.lang = pickLang(options.lang);
      this.t = I18N[this.lang];
      this.api = trimSlash(options.api || defaultApiBase());
      this.product = options.product || '';
      this.category = options.category || '';
      this.searchLang = options.searchLang || '';
      this.limit = Math.max(1, Math.min(50, parseInt(options.limit, 10) || 5));
      this.ticketUrl = options.ticketUrl || 'mailto:support@lanyun.example';
      this.uid = `kefu${++instanceCounter}`;

      this.timer = 0;
      this.composing = false;
      this.seq = 0;
      this.searchCtl = null;
      this.suggestCtl = null;
      this.state = { query: '', hits: [], total: 0, suggestions: [], error: null, done: false };
      this.activeKey = null;
      this.pendingQuery = null;

      injectStyles();
      this.build(options.placeholder);
      this.bind();
    }

    build(placeholder) {
      const t = this.t;
      const id = this.uid;
      this.root = el('div', { class: 'kefu-root', 'data-testid': 'kefu-widget', 'data-kefu-state': 'idle', 'data-kefu-results-for': '', lang: this.lang === 'zh' ? 'zh-CN' : 'en' });
      const label = el('label', { class: 'kefu-sr', for: `${id}-input`, text: t.label });
      this.input = el('input', {
        id: `${id}-input`, class: 'kefu-input', type: 'text', role: 'combobox',
        'aria-expanded': 'false', 'aria-controls': `${id}-list`, 'aria-autocomplete': 'list',
        'aria-haspopup': 'listbox', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false',
        enterkeyhint: 'search', inputmode: 'search', placeholder: placeholder || t.placeholder,
        'data-testid': 'kefu-input',
      });
      this.clearBtn = el('button', { type: 'button', class: 'kefu-clear', 'aria-label': t.clear, hidden: true, text: '×' });
      const spinner = el('span', { class: 'kefu-spinner', 'aria-hidden': 'true' });
      const box = el('div', { class: 'kefu-box' }, svg(ICON_SEARCH), this.input, spinner, this.clearBtn);

      this.list = el('div', { id: `${id}-list`, class: 'kefu-list', role: 'listbox', 'aria-label': t.label, 'data-testid': 'kefu-results' });
      this.status = el('div', { class: 'kefu-status', 'data-testid': 'kefu-status' });
      this.footer = el('div', { class: 'kefu-footer' });
      this.panel = el('div', { class: 'kefu-panel', hidden: true }, this.list, this.status, this.footer);
      this.live = el('div', { class: 'kefu-sr', 'aria-live': 'polite', role: 'status' });

      this.root.append(label, box, this.panel, this.live);
      this.host.replaceChildren(this.root);
    }

    bind() {
      const input = this.input;
      input.addEventListener('compositionstart', () => {
        this.composing = true;
        clearTimeout(this.timer);
      });
      input.addEventListener('compositionend', () => {
        this.composing = false;
        this.updateClear();
        this.schedule();
      });
      input.addEventListener('input', (e) => {
        this.updateClear();
        if (this.composing || e.isComposing) return; // partial pinyin: wait for compositionend
        this.schedule();
      });
      input.addEventListener('keydown', (e) => this.onKey(e));
      input.addEventListener('focus', () => {
        if (this.input.value.trim() && this.state.query === this.input.value.trim() && this.hasContent()) this.open();
      });

      this.clearBtn.addEventListener('click', () => {
        this.input.value = '';
        this.updateClear();
        this.reset();
        this.input.focus();
      });

      // Keep focus in the input while clicking inside the panel.
      this.panel.addEventListener('mousedown', (e) => {
        if (!e.target.closest('button')) e.preventDefault();
      });
      this.list.addEventListener('click', (e) => {
        const opt = e.target.closest('[role="option"]');
        if (opt) this.activate(opt, e);
      });
      this.list.addEventListener('mousemove', (e) => {
        const opt = e.target.closest('[role="option"]');
        if (opt && opt.dataset.key !== this.activeKey) this.setActive(opt.dataset.key, false);
      });

      document.addEventListener('pointerdown', (e) => {
        if (!this.root.contains(e.target)) this.close();
      }, true);
      this.root.addEventListener('focusout', (e) => {
        if (e.relatedTarget && !this.root.contains(e.relatedTarget)) this.close();
      });
    }

    // ---- state helpers
    updateClear() {
      this.clearBtn.hidden = !this.input.value;
    }

    hasContent() {
      return this.list.childElementCount > 0 || this.status.childElementCount > 0;
    }

    options() {
      return Array.from(this.list.querySelectorAll('[role="option"]'));
    }

    open() {
      if (!this.hasContent()) return;
      this.panel.hidden = false;
      this.input.setAttribute('aria-expanded', 'true');
    }

    close() {
      this.panel.hidden = true;
      this.input.setAttribute('aria-expanded', 'false');
      this.setActive(null);
    }

    reset() {
      clearTimeout(this.timer);
      this.seq++;
      if (this.searchCtl) this.searchCtl.abort();
      if (this.suggestCtl) this.suggestCtl.abort();
      this.state = { query: '', hits: [], total: 0, suggestions: [], error: null, done: false };
      this.pendingQuery = null;
      this.root.dataset.kefuState = 'idle';
      this.root.dataset.kefuResultsFor = '';
      this.list.replaceChildren();
      this.status.replaceChildren();
      this.footer.replaceChildren();
      this.close();
    }

    setActive(key, scroll = true) {
      this.activeKey = key;
      let activeEl = null;
      for (const o of this.options()) {
        const on = key !== null && o.dataset.key === key;
        o.setAttribute('aria-selected', on ? 'true' : 'false');
        if (on) activeEl = o;
      }
      if (activeEl) {
        this.input.setAttribute('aria-activedescendant', activeEl.id);
        if (scroll) activeEl.scrollIntoView({ block: 'nearest' });
      } else {
        this.input.removeAttribute('aria-activedescendant');
        this.activeKey = null;
      }
    }

    move(delta) {
      const opts = this.options();
      if (!opts.length) return;
      if (this.panel.hidden) this.open();
      const i = opts.findIndex((o) => o.dataset.key === this.activeKey);
      let next;
      if (i < 0) next = delta > 0 ? 0 : opts.length - 1;
      else next = (i + delta + opts.length) % opts.length;
      this.setActive(opts[next].dataset.key);
    }

    onKey(e) {
      if (e.isComposing || e.keyCode === 229) return; // IME is handling the key
      switch (e.key) {
        case 'ArrowDown':
          e.preventDefault();
          this.move(1);
          break;
        case 'ArrowUp':
          e.preventDefault();
          this.move(-1);
          break;
        case 'Enter': {
          const active = this.options().find((o) => o.dataset.key === this.activeKey);
          e.preventDefault();
          if (active && !this.panel.hidden) this.activate(active, e);
          else this.flush();
          break;
        }
        case 'Escape':
          if (!this.panel.hidden) {
            e.preventDefault();
            this.close();
          } else if (this.input.value) {
            e.preventDefault();
            this.input.value = '';
            this.updateClear();
            this.reset();
          }
          break;
        default:
      }
    }

    /** Open a result / run a suggestion. `e` is the click or key event. */
    activate(opt, e) {
      const kind = opt.dataset.kind;
      if (kind === 'query') {
        if (e) e.preventDefault();
        this.search(opt.dataset.text);
        return;
      }
      // A link to an article (search hit or title suggestion): record the click, then navigate.
      sendEvent(this.api, { query: this.state.query, article_id: opt.dataset.articleId, event: 'click' });
      if (e && e.type === 'keydown') {
        if (e.ctrlKey || e.metaKey) window.open(opt.href, '_blank', 'noopener');
        else location.assign(opt.href);
      }
      // For clicks the browser follows the link itself (keeps ctrl/middle-click behaviour).
    }

    // ---- searching
    schedule() {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
    }

    flush() {
      clearTimeout(this.timer);
      this.run(true);
    }

    /** Public: fill the box with `text` and search now. */
    search(text) {
      this.input.value = String(text);
      this.updateClear();
      this.input.focus();
      clearTimeout(this.timer);
      this.run(true);
    }

    run(force) {
      const q = this.input.value.trim();
      if (!q) {
        this.reset();
        return;
      }
      if (!force && q === this.pendingQuery) {
        // Same text as the newest request (e.g. a no-op key): its response is shown or on its way.
        this.open();
        return;
      }
      const seq = ++this.seq;
      if (this.searchCtl) this.searchCtl.abort();
      if (this.suggestCtl) this.suggestCtl.abort();
      const sCtl = (this.searchCtl = new AbortController());
      const gCtl = (this.suggestCtl = new AbortController());
      this.root.dataset.kefuState = 'loading';
      this.pendingQuery = q;

      const params = new URLSearchParams({ q, limit: String(this.limit), offset: '0' });
      if (this.searchLang) params.set('lang', this.searchLang);
      if (this.product) params.set('product', this.product);
      if (this.category) params.set('category', this.category);

      fetchJSON(`${this.api}/v1/search?${params}`, { signal: sCtl.signal })
        .then((data) => {
          if (seq !== this.seq) return; // stale: a newer query is in flight or shown
          const prevSuggestions = this.state.query === q ? this.state.suggestions : this.pendingSuggestions(q);
          this.state = {
            query: q,
            hits: Array.isArray(data && data.hits) ? data.hits : [],
            total: Number((data && data.total) || 0),
            // The server stopped counting there (a quoted word most articles hold): "1000+".
            totalAtLeast: Boolean(data && data.total_is_lower_bound),
            relaxed: Boolean(data && data.relaxed),
            suggestions: prevSuggestions,
            error: null,
            done: true,
          };
          this.activeKey = null;
          this.render(true);
        })
        .catch((err) => {
          if (err && err.name === 'AbortError') return;
          if (seq !== this.seq) return;
          this.state = { query: q, hits: [], total: 0, suggestions: this.pendingSuggestions(q), error: err, done: true };
          this.render(true);
        });

      const gp = new URLSearchParams({ q, limit: '8' });
      this.suggestBuffer = { q, list: [] };
      fetchJSON(`${this.api}/v1/suggest?${gp}`, { signal: gCtl.signal })
        .then((data) => {
          if (seq !== this.seq) return;
          const list = Array.isArray(data && data.suggestions) ? data.suggestions : [];
          this.suggestBuffer = { q, list };
          if (this.state.query === q && this.state.done) {
            this.state.suggestions = list;
            this.render(false);
          }
        })
        .catch(() => { /* suggestions are optional */ });
    }

    pendingSuggestions(q) {
      return this.suggestBuffer && this.suggestBuffer.q === q ? this.suggestBuffer.list : [];
    }

    // ---- rendering
    render(announce) {
      const t = this.t;
      const { query, hits, total, error } = this.state;
      const shownTotal = this.state.totalAtLeast ? `${total}+` : total || hits.length;
      const id = this.uid;
      const hitIds = new Set(hits.map((h) => h.id));
      const seen = new Set([query.toLowerCase()]);
      const suggestions = (this.state.suggestions || []).filter((s) => {
        if (!s || !s.text) return false;
        if (s.id && hitIds.has(s.id)) return false;
        const k = String(s.text).trim().toLowerCase();
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      }).slice(0, 5);

      this.root.dataset.kefuState = error ? 'error' : hits.length ? 'results' : 'empty';
      this.root.dataset.kefuResultsFor = query;

      const groups = [];
      if (hits.length) {
        const labelId = `${id}-g-res`;
        const g = el('div', { class: 'kefu-group', role: 'group', 'aria-labelledby': labelId },
          el('div', { class: 'kefu-group-label', id: labelId, 'aria-hidden': 'true' },
            el('span', { text: t.articles }), el('span', { text: t.total(shownTotal) })));
        if (this.state.relaxed) g.append(el('div', { class: 'kefu-relaxed', 'data-testid': 'kefu-relaxed', text: t.relaxed }));
        hits.forEach((h, i) => g.append(this.renderHit(h, i)));
        groups.push(g);
      }
      if (suggestions.length) {
        const labelId = `${id}-g-sug`;
        const g = el('div', { class: 'kefu-group', role: 'group', 'aria-labelledby': labelId },
          el('div', { class: 'kefu-group-label', id: labelId, 'aria-hidden': 'true' }, el('span', { text: t.suggestions })));
        suggestions.forEach((s, i) => g.append(this.renderSuggestion(s, i)));
        groups.push(g);
      }
      this.list.replaceChildren(...groups);

      // status area: empty / error
      if (error) {
        this.status.replaceChildren(el('div', { role: 'alert' }, el('strong', { text: t.error })));
      } else if (!hits.length) {
        this.status.replaceChildren(
          el('div', { 'data-testid': 'kefu-empty' },
            el('strong', { text: t.empty }),
            t.emptyHint,
            el('a', { href: this.ticketUrl, target: '_top', text: t.openTicket }),
            t.emptyHint2),
        );
      } else {
        this.status.replaceChildren();
      }

      // footer: more / helpful / key hints
      const footer = [];
      if (hits.length && hits.length < total) {
        const more = el('button', { type: 'button', class: 'kefu-more', 'data-testid': 'kefu-more', text: `${t.more} (${hits.length}/${shownTotal})` });
        more.addEventListener('click', () => this.loadMore(more));
        footer.push(more);
      }
      if (hits.length) {
        footer.push(feedbackBar({
          api: this.api, lang: this.lang, query, articleId: hits[0].id, question: t.resultsQ,
        }));
        footer.push(el('span', { class: 'kefu-keys', 'aria-hidden': 'true', text: t.keys }));
      }
      this.footer.replaceChildren(...footer);

      // keep the active option if it still exists
      const keys = new Set(this.options().map((o) => o.dataset.key));
      this.setActive(keys.has(this.activeKey) ? this.activeKey : null, false);

      if (announce) this.live.textContent = error ? t.error : t.announce(shownTotal);
      if (this.root.contains(document.activeElement)) this.open();
    }

    renderHit(h, i) {
      const t = this.t;
      const meta = el('span', { class: 'kefu-result-meta' });
      if (h.product) meta.append(el('span', { class: 'kefu-tag', text: t.products[h.product] || h.product }));
      if (h.lang && h.lang !== this.lang && t.langBadge[h.lang]) meta.append(el('span', { class: 'kefu-tag', text: t.langBadge[h.lang] }));
      if (h.section) meta.append(el('span', { class: 'kefu-result-section', text: `§ ${h.section}` }));
      const snippet = el('span', { class: 'kefu-snippet', 'data-testid': 'kefu-snippet' });
      snippet.append(snippetNodes(h.snippet));
      const a = el('a', {
        id: `${this.uid}-r-${i}`, class: 'kefu-result', role: 'option', 'aria-selected': 'false',
        tabindex: '-1', href: articleHref(this.api, h.id, this.state.query, h.anchor),
        'data-testid': 'kefu-result', 'data-kind': 'article', 'data-key': `r:${h.id}:${i}`,
        'data-article-id': h.id,
      }, el('span', { class: 'kefu-result-title', text: h.title || h.id }), meta, snippet);
      return a;
    }

    renderSuggestion(s, i) {
      const common = {
        id: `${this.uid}-s-${i}`, role: 'option', 'aria-selected': 'false', tabindex: '-1',
        'data-testid': 'kefu-suggestion', 'data-text': s.text,
      };
      if (s.id) {
        return el('a', {
          ...common, class: 'kefu-suggestion', href: articleHref(this.api, s.id, this.state.query, null),
          'data-kind': 'article', 'data-key': `s:${s.id}`, 'data-article-id': s.id,
        }, svg(ICON_DOC), el('span', { text: s.text }));
      }
      return el('div', { ...common, class: 'kefu-suggestion', 'data-kind': 'query', 'data-key': `q:${s.text}` },
        svg(ICON_QUERY), el('span', { text: s.text }));
    }

    async loadMore(btn) {
      const seq = this.seq;
      const q = this.state.query;
      btn.disabled = true;
      const params = new URLSearchParams({ q, limit: String(this.limit), offset: String(this.state.hits.length) });
      if (this.searchLang) params.set('lang', this.searchLang);
      if (this.product) params.set('product', this.product);
      if (this.category) params.set('category', this.category);
      try {
        const data = await fetchJSON(`${this.api}/v1/search?${params}`);
        if (seq !== this.seq || q !== this.state.query) return;
        const more = Array.isArray(data && data.hits) ? data.hits : [];
        const firstNew = this.state.hits.length;
        this.state.hits = this.state.hits.concat(more);
        if (!more.length) {
          this.state.total = this.state.hits.length;
          this.state.totalAtLeast = false;
        }
        this.render(false);
        const opts = this.list.querySelectorAll('[data-kind="article"][data-testid="kefu-result"]');
        if (opts[firstNew]) this.setActive(opts[firstNew].dataset.key);
        this.input.focus();
      } catch (_) {
        btn.disabled = false;
      }
    }
  }

  // ---------------------------------------------------------------- public API & auto-mount

  function resolveTarget(target) {
    if (!target) return null;
    if (target instanceof Element) return target;
    try {
      return document.querySelector(target);
    } catch (_) {
      return null;
    }
  }

  function mount(target, options = {}) {
    const node = resolveTarget(target);
    if (!node) throw new Error(`kefu: mount target not found: ${target}`);
    if (instances.has(node)) return instances.get(node);
    const w = new Widget(node, options);
    instances.set(node, w);
    const api = {
      search: (text) => w.search(text),
      clear: () => { w.input.value = ''; w.updateClear(); w.reset(); },
      focus: () => w.input.focus(),
      get input() { return w.input; },
      get lang() { return w.lang; },
      get api() { return w.api; },
    };
    instances.set(node, api);
    return api;
  }

  const Kefu = window.Kefu || {};
  Kefu.version = '1';
  Kefu.mount = mount;
  Kefu.get = (target) => instances.get(resolveTarget(target)) || null;
  Kefu.feedback = feedbackBar;
  Kefu.articleHref = (id, query, anchor, api) => articleHref(trimSlash(api !== undefined ? api : defaultApiBase()), id, query, anchor);
  Kefu.pickLang = pickLang;
  Kefu.strings = I18N;
  Kefu.injectStyles = injectStyles;
  window.Kefu = Kefu;

  // Elements with data-kefu-query="..." fill the (first) widget and search.
  if (!Kefu.__delegated) {
    Kefu.__delegated = true;
    document.addEventListener('click', (e) => {
      const trigger = e.target instanceof Element ? e.target.closest('[data-kefu-query]') : null;
      if (!trigger || trigger.closest('.kefu-root')) return;
      const first = instances.values().next().value;
      if (!first) return;
      e.preventDefault();
      first.search(trigger.getAttribute('data-kefu-query'));
    });
  }

  function autoMount() {
    if (!SCRIPT) return;
    const d = SCRIPT.dataset;
    const target = d.target || '#kefu-help';
    const node = resolveTarget(target);
    if (!node) {
      console.warn(`kefu widget: no element matches data-target="${target}"`);
      return;
    }
    mount(node, {
      lang: d.lang, api: d.api, product: d.product, category: d.category, searchLang: d.searchLang,
      limit: d.limit, ticketUrl: d.ticketUrl, placeholder: d.placeholder,
    });
  }

  if (SCRIPT && !SCRIPT.hasAttribute('data-no-mount')) {
    const d = SCRIPT.dataset;
    if (resolveTarget(d.target || '#kefu-help') || document.readyState !== 'loading') autoMount();
    else document.addEventListener('DOMContentLoaded', autoMount, { once: true });
  }
})();
