// flinks-bff demo: link a bank account through our own backend (the BFF), two ways.
//
//   Flinks Connect  POST /v1/connect/sessions -> embed iframe_url -> wait for Connect's REDIRECT
//                   message -> POST /v1/connect/sessions/{flow_id}/complete with its loginId.
//                   (A Connect that navigates the whole window instead lands on the BFF's own
//                   page, app/web/landing.js, which completes the flow and comes back here
//                   with ?flow_id=&status=, as OAuth does.)
//   OAuth           navigate to /v1/oauth/start -> the bank -> the BFF's callback -> back here
//                   with ?flow_id=&status= -> GET /v1/flows/{flow_id}. (jwt mode: POST
//                   /v1/oauth/sessions first, which carries the token, then to the bank.)
//   Either way      the flow may ask MFA: POST /v1/flows/{flow_id}/mfa.
//   Once linked     the flow names its link_id. The "Linked accounts" list (GET /v1/links)
//                   and the accounts and last transactions of one link (GET /v1/links/{id}/
//                   accounts and /transactions; 202 + Retry-After while Flinks prepares them)
//                   come from the BFF on every load: a reload shows the same. Unlink: DELETE.
//
// Who the caller is comes from /web/config.json (BFF_AUTH). In `session` mode the HttpOnly
// cookie is all. In `jwt` mode every /v1 call carries `Authorization: Bearer`; in development
// the sandbox's test issuer gives a token for any user name ("Sign in as"), kept in
// sessionStorage (this tab only) and dropped on sign-out or when the BFF refuses it.
//
// Nothing secret lives in this page. The Flinks keys stay on the server; the session cookie is
// HttpOnly; the only tokens that reach the browser are the single-use authorize token inside the
// iframe URL, because Flinks Connect needs it there, and in jwt mode the user's bearer token.
// The loginId passes through here exactly once, from Connect's REDIRECT message to our own BFF,
// and is never logged, stored or shown.
// Of an account the page shows its masked number ("•••• 1234") only; the BFF sends no more.
//
// No build step, no dependencies, no inline scripts or styles: it runs under a strict
// Content-Security-Policy (script-src 'self').
(function () {
  "use strict";

  var INSTITUTION = "FlinksCapital";
  var FLOW_ID = /^[A-Za-z0-9_-]{22}$/;
  var LOGIN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  var STEP = /^[A-Z][A-Z0-9_]{0,63}$/;
  // The same pattern as INSTITUTION_ID_PATTERN in app/flows/records.py (the one definition).
  var INSTITUTION_ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
  var REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
  // The BFF's Connect landing page (app/api/landing.py): Connect's redirectUrl is this + flow id.
  var LANDING_PATH = "/v1/connect/return/";
  var INSTITUTION_NAMES = { FlinksCapital: "Flinks Capital" };
  var MAX_STEPS = 40;
  // Re-reading a pending flow: the BFF re-checks with Flinks at most every few seconds anyway.
  var POLL_DELAYS_MS = [2000, 3000, 5000, 8000, 13000, 20000, 30000];
  var LINK_ID = /^[A-Za-z0-9_-]{22}$/;
  var MASK = /^[0-9]{1,4}$/;
  var CURRENCY = /^[A-Z]{3}$/;
  var JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
  // A user name for the development sign-in: what a person would type, nothing that reads as
  // two values.
  var USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
  var IDENTITY_KEY = "flinks-bff-demo.identity";
  var RECENT_TRANSACTIONS = 10;
  // While Flinks prepares a link's data the BFF says when to ask again (Retry-After, seconds).
  var DATA_RETRY_DEFAULT_S = 10;
  var DATA_RETRY_MAX_S = 120;

  // -- Words ---------------------------------------------------------------------------------
  // Codes are for programs; people get sentences. Every code shown is paired with words.

  // Connect's postMessage steps (flinks-contract 5.4), as they happen.
  var STEP_WORDS = {
    APP_MOUNTED: "Flinks Connect opened.",
    APP_ONLINE: "Flinks Connect is online again.",
    APP_OFFLINE: "Flinks Connect lost its connection.",
    COMPONENT_LOAD_INSTITUTION_SELECTOR: "Showing the list of banks.",
    INSTITUTION_SELECTED: "Bank chosen: {bank}.",
    COMPONENT_LOAD_CONSENT: "Asking for your consent to share account data.",
    COMPONENT_ACCEPT_CONSENT: "Consent given.",
    COMPONENT_ACCEPT_TERMS: "Terms accepted.",
    COMPONENT_LOAD_CREDENTIAL: "Asking for your bank sign-in.",
    COMPONENT_LOAD_CREDENTIAL_RETRY: "Trying the bank sign-in again.",
    SUBMIT_CREDENTIAL: "Sign-in sent to the bank.",
    COMPONENT_LOAD_MFA: "The bank asked a security question (in the Flinks window).",
    COMPONENT_LOAD_MFA_RETRY: "Answering the security question again.",
    SUBMIT_MFA: "Security answer sent to the bank.",
    COMPONENT_LOAD_ACCOUNT_SELECTION: "Choosing which accounts to share.",
    ACCOUNT_SELECTED: "Accounts chosen.",
    POPUP_OPENED: "The bank's sign-in opened in a new window.",
    POPUP_BLOCKED: "The browser blocked the bank's sign-in window. Allow pop-ups and try again.",
    REDIRECT: "Bank sign-in finished. Finishing the link on our server."
  };

  // What the status says at each of Connect's steps, so that it follows what the Flinks window
  // shows: [state, title, detail]. "waiting": the person acts in the Flinks window; "busy": the
  // bank is working. Steps not listed leave it as it is.
  var IN_THE_WINDOW = "Waiting for you in the Flinks window.";
  var ANSWER_IN_THE_WINDOW = "Answer it in the Flinks window.";
  var STEP_STATUS = {
    APP_MOUNTED: ["waiting", "Flinks Connect is opening…", null],
    APP_OFFLINE: [
      "waiting",
      "Flinks Connect lost its connection.",
      "It goes on once you are back online."
    ],
    COMPONENT_LOAD_INSTITUTION_SELECTOR: ["waiting", IN_THE_WINDOW, "Choose your bank."],
    INSTITUTION_SELECTED: ["waiting", IN_THE_WINDOW, "Bank chosen: {bank}."],
    COMPONENT_LOAD_CONSENT: ["waiting", IN_THE_WINDOW, "Agree to share your account data."],
    COMPONENT_ACCEPT_CONSENT: ["waiting", IN_THE_WINDOW, "Consent given."],
    COMPONENT_ACCEPT_TERMS: ["waiting", IN_THE_WINDOW, "Terms accepted."],
    COMPONENT_LOAD_CREDENTIAL: ["waiting", IN_THE_WINDOW, "Sign in to {bank}."],
    COMPONENT_LOAD_CREDENTIAL_RETRY: ["waiting", IN_THE_WINDOW, "Sign in to {bank} again."],
    SUBMIT_CREDENTIAL: [
      "busy",
      "Signing in to {bank}…",
      "The bank is checking the username and password."
    ],
    COMPONENT_LOAD_MFA: ["waiting", "{Bank} asks a security question.", ANSWER_IN_THE_WINDOW],
    COMPONENT_LOAD_MFA_RETRY: [
      "waiting",
      "{Bank} asks a security question again.",
      ANSWER_IN_THE_WINDOW
    ],
    SUBMIT_MFA: ["busy", "Sending your answer to {bank}…", null],
    COMPONENT_LOAD_ACCOUNT_SELECTION: ["waiting", IN_THE_WINDOW, "Choose the accounts to share."],
    ACCOUNT_SELECTED: ["busy", "Accounts chosen.", "Flinks is finishing the link…"],
    POPUP_OPENED: ["waiting", "Waiting for you at {bank}.", "Sign in in the window that opened."],
    POPUP_BLOCKED: [
      "waiting",
      "The browser blocked the bank's sign-in window.",
      "Allow pop-ups for this site, then try again in the Flinks window."
    ]
  };
  // After an error Connect shows with its own "Try again": the sign-in may be tried again, or
  // the bank refused the account itself (disabled_login, disabled_institution).
  var RETRY_STATUS = ["waiting", "Not linked yet.", null];
  var REFUSED_STATUS = ["failed", "Not linked.", null];

  // Steps after which this Connect session cannot go on: the person must start again.
  var TERMINAL_STEP_WORDS = {
    COMPONENT_DENY_CONSENT: "You declined to share your account data, so nothing was linked.",
    COMPONENT_DENY_TERMS: "You declined the terms, so nothing was linked.",
    COMPONENT_CLOSE_SESSION: "The Flinks window was closed before the account was linked.",
    MAXIMUM_RETRY_REACHED: "Too many attempts failed, so Flinks stopped this session."
  };

  // Connect's error events are named after FlinksCodes; so are flow errors, in lower case.
  var ERROR_WORDS = {
    invalid_login: "The bank did not accept the username or password.",
    invalid_username: "The bank did not recognise the username.",
    invalid_password: "The bank did not accept the password.",
    invalid_security_response: "The bank did not accept the answer to the security question.",
    invalid_security_response_no_retry: "The bank did not accept the security answers.",
    unknown_challenge_key: "The answer did not match the question the bank asked.",
    securityresponses_incomplete: "Every security question needs an answer.",
    disabled_login: "The bank has disabled online access for this account.",
    disabled_institution: "This bank is not available right now.",
    retry_later: "We could not reach the bank. Please try again later.",
    unauthorized: "The bank did not authorise access to the account.",
    new_account: "The bank needs you to sign in to its online banking once before linking.",
    aggregation_error: "Something went wrong while reading the account.",
    access_denied: "This Flinks session is no longer valid.",
    session_nonexistent: "This Flinks session has expired.",
    session_expired: "This Flinks session has expired.",
    too_many_requests: "Too many attempts. Please wait a few minutes.",
    concurrent_session: "Another link to this account is in progress.",
    oauth_access_denied: "Access was not granted at the bank, so no account was linked.",
    oauth_invalid_request: "The bank could not process the link request.",
    oauth_server_error: "The bank could not complete the link.",
    oauth_temporarily_unavailable: "The bank is temporarily unavailable.",
    oauth_error: "The bank could not complete the link.",
    invalid_callback: "The bank's answer could not be used.",
    institution_mismatch: "The bank that answered is not the one that was chosen.",
    flinks_unavailable: "Flinks could not be reached.",
    flinks_timeout: "Flinks did not answer in time.",
    flinks_rejected: "Flinks refused the request.",
    flinks_error: "Something went wrong while connecting to the bank."
  };

  // The BFF's own errors (application/problem+json `code`), plus two of this page's.
  var PROBLEM_WORDS = {
    network_error: "We could not reach the server. Check your connection and try again.",
    unexpected_response: "The server sent an answer this page could not read. Please try again.",
    flow_expired: "This link attempt has expired. Please start again.",
    flow_not_found:
      "We could not find this link attempt. It may have expired, or it was started in another browser.",
    state_invalid: "This link attempt is unknown, expired or already used. Please start again.",
    return_url_not_allowed: "The server does not allow returning to this page's address.",
    origin_not_allowed: "The server does not accept requests from this page's address.",
    unsupported_media_type: "The server did not accept the format of the request.",
    conflict: "This step was already done, perhaps in another tab.",
    rate_limited: "Too many attempts. Please wait a moment and try again.",
    validation_error: "The server did not accept the request.",
    flinks_rejected: "Flinks refused the request.",
    flinks_unavailable: "Flinks cannot be reached right now. Please try again in a moment.",
    flinks_timeout: "Flinks did not answer in time. Please try again.",
    store_unavailable: "The service is temporarily unavailable. Please try again in a moment.",
    unauthenticated: "Please sign in again.",
    identity_unavailable: "Your sign-in cannot be checked right now. Please try again in a moment.",
    login_owned_elsewhere: "This bank account is already linked by another user.",
    link_not_found: "This linked account no longer exists.",
    internal_error: "Something went wrong on our side. Please try again."
  };

  // The words for a code, or null. Own keys only: "constructor" is not a Flinks step.
  function wordsFor(table, code) {
    return typeof code === "string" && Object.prototype.hasOwnProperty.call(table, code)
      ? table[code]
      : null;
  }

  // -- Elements ------------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  var ui = {
    connectStart: $("connect-start"),
    oauthStart: $("oauth-start"),
    workspace: $("workspace"),
    result: $("result"),
    message: $("message"),
    status: $("status"),
    error: $("error"),
    mfaForm: $("mfa-form"),
    mfaFields: $("mfa-fields"),
    mfaRetry: $("mfa-retry"),
    mfaSubmit: $("mfa-submit"),
    checkAgain: $("check-again"),
    restart: $("restart"),
    stepsBox: $("steps-box"),
    steps: $("steps"),
    connectPanel: $("connect-panel"),
    connectSlot: $("connect-slot"),
    identity: $("identity"),
    signInForm: $("sign-in-form"),
    signInName: $("sign-in-name"),
    signInButton: $("sign-in"),
    signedIn: $("signed-in"),
    signedInName: $("signed-in-name"),
    signOut: $("sign-out"),
    identityError: $("identity-error"),
    links: $("links"),
    linksEmpty: $("links-empty"),
    linksList: $("links-list"),
    linksError: $("links-error"),
    data: $("data"),
    dataTitle: $("data-title"),
    dataStatus: $("data-status"),
    dataRetry: $("data-retry"),
    accountsBox: $("accounts-box"),
    accounts: document.querySelector("#accounts tbody"),
    transactionsBox: $("transactions-box"),
    transactionsTitle: $("transactions-title"),
    transactionsEmpty: $("transactions-empty"),
    transactions: document.querySelector("#transactions tbody")
  };

  // What the BFF says about itself (/web/config.json); session mode until it answers.
  var config = { auth: "session", devIssuer: null, ready: false };

  // The flow this page is working on: { id, kind, expiresAt } or null.
  var flow = null;
  // The Connect iframe this page opened: { frame, origin, done, institution, shown } or null.
  var connect = null;
  // Scroll the result into view once it shows (after a return from the bank or from Connect).
  var revealResult = false;
  var timers = { poll: null, expiry: null };
  var pollCount = 0;

  // -- Talking to the BFF --------------------------------------------------------------------

  function ApiError(problem, httpStatus) {
    this.problem = problem;
    this.httpStatus = httpStatus;
  }

  // Every call goes to our own origin, with the session cookie (credentials: same-origin), in
  // jwt mode the bearer token, and, for a body, Content-Type: application/json (the BFF
  // refuses anything else on POST). `keepalive`: the request goes on, and its answer's cookie
  // is kept, if the page is left. Answers the body; `send` also the status and Retry-After.
  function api(method, path, body, keepalive) {
    return send(method, path, body, keepalive).then(function (result) {
      return result.data;
    });
  }

  function send(method, path, body, keepalive) {
    var init = {
      method: method,
      credentials: "same-origin",
      cache: "no-store",
      keepalive: keepalive === true,
      headers: { Accept: "application/json" }
    };
    var identity = config.auth === "jwt" ? storedIdentity() : null;
    if (identity) init.headers.Authorization = "Bearer " + identity.token;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      function (response) {
        return response.json().then(
          function (data) { return { response: response, data: data }; },
          function () { return { response: response, data: null }; }
        );
      },
      function () {
        throw new ApiError({ code: "network_error" }, 0);
      }
    ).then(function (result) {
      var data = result.data;
      var httpStatus = result.response.status;
      if (!result.response.ok) {
        // application/problem+json: {type, title, status, code, detail?, request_id}
        var problem = data && typeof data.code === "string" ? data : { code: "unexpected_response" };
        if (httpStatus === 401 && identity && sameIdentity(identity, storedIdentity())) {
          // The BFF no longer believes this token (expired, or the issuer's key changed).
          forgetIdentity("Your sign-in has ended. Please sign in again.");
        }
        throw new ApiError(problem, httpStatus);
      }
      if (httpStatus === 204) data = {};
      if (!data || typeof data !== "object") {
        throw new ApiError({ code: "unexpected_response" }, httpStatus);
      }
      return { status: httpStatus, data: data, retryAfter: retryAfter(result.response) };
    });
  }

  // Retry-After in seconds (the BFF sends a number), within reason.
  function retryAfter(response) {
    var seconds = parseInt(response.headers.get("Retry-After") || "", 10);
    if (!(seconds >= 1)) return DATA_RETRY_DEFAULT_S;
    return Math.min(seconds, DATA_RETRY_MAX_S);
  }

  function flowPath(flowId) {
    return "/v1/flows/" + encodeURIComponent(flowId);
  }

  // -- Rendering -----------------------------------------------------------------------------
  // Text only: everything is set with textContent, never parsed as HTML.

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(state, title, detail) {
    ui.status.setAttribute("data-state", state);
    ui.message.setAttribute("data-state", state);
    ui.status.replaceChildren(el("p", "status-title", title));
    if (detail) ui.status.appendChild(el("p", "status-detail", detail));
  }

  // A few labelled facts under the status. The flow id is all this page keeps of a link; the
  // loginId stays on the server.
  function showFacts(rows) {
    var list = el("dl", "facts");
    rows.forEach(function (row) {
      list.append(el("dt", "", row[0]), el("dd", "", row[1]));
    });
    ui.status.appendChild(list);
  }

  function showError(code, words, reference) {
    ui.error.setAttribute("data-code", code);
    ui.error.replaceChildren(el("p", "error-words", words));
    var meta = "Error code: " + code + (reference ? " · Reference: " + reference : "");
    ui.error.appendChild(el("p", "error-meta", meta));
    ui.error.hidden = false;
    ui.message.setAttribute("data-error", "");
    ui.mfaRetry.hidden = true; // one message at a time: this one is newer
  }

  function clearError() {
    ui.message.removeAttribute("data-error");
    ui.error.hidden = true;
    ui.error.removeAttribute("data-code");
    ui.error.replaceChildren();
  }

  function addStep(words, kind) {
    var item = el("li", kind ? "step step-" + kind : "step", words);
    ui.steps.appendChild(item);
    while (ui.steps.children.length > MAX_STEPS) ui.steps.removeChild(ui.steps.firstChild);
    ui.stepsBox.hidden = false;
  }

  // Scrolls `node` to the top of the window unless it is wholly in view already (on a phone the
  // result sits below the two ways to link, out of sight).
  function reveal(node) {
    var box = node.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    node.scrollIntoView({ block: "start" });
  }

  function revealResultOnce() {
    if (!revealResult) return;
    revealResult = false;
    reveal(ui.result);
  }

  function isInstitution(value) {
    return typeof value === "string" && INSTITUTION_ID.test(value);
  }

  function bankName(institution) {
    if (!isInstitution(institution)) return "your bank";
    return wordsFor(INSTITUTION_NAMES, institution) || institution;
  }

  function problemWords(error) {
    var problem = error instanceof ApiError ? error.problem : { code: "unexpected_response" };
    var code = typeof problem.code === "string" ? problem.code : "unexpected_response";
    var words = wordsFor(PROBLEM_WORDS, code);
    if (!words) {
      // An HTTP status alone is a code too: still say what it means.
      words = "The server could not do this (HTTP " + (error.httpStatus || "error") + ").";
    }
    if (code === "flinks_rejected" && typeof problem.flinks_code === "string") {
      words = wordsFor(ERROR_WORDS, problem.flinks_code.toLowerCase()) || words;
    }
    var reference =
      typeof problem.request_id === "string" && REQUEST_ID.test(problem.request_id)
        ? problem.request_id
        : null;
    return { code: code, words: words, reference: reference };
  }

  function showProblem(error) {
    var p = problemWords(error);
    setStatus("error", "Not linked.", null);
    showError(p.code, p.words, p.reference);
    addStep(p.words, "error");
    ui.restart.hidden = false;
    revealResultOnce();
  }

  // -- Starting over -------------------------------------------------------------------------

  function stopTimers() {
    clearTimeout(timers.poll);
    clearTimeout(timers.expiry);
    timers.poll = timers.expiry = null;
  }

  function closeConnect() {
    if (connect) connect.frame.remove();
    connect = null;
    ui.connectPanel.hidden = true;
    ui.workspace.classList.remove("with-connect");
  }

  function reset() {
    stopTimers();
    closeConnect();
    flow = null;
    pollCount = 0;
    revealResult = false;
    clearError();
    hideMfa();
    ui.checkAgain.hidden = true;
    ui.restart.hidden = true;
    ui.restart.textContent = "Start again";
    ui.steps.replaceChildren();
    ui.stepsBox.hidden = true;
    setStatus("idle", "No account linked yet.", "Choose Flinks Connect or OAuth above.");
  }

  function watchExpiry(expiresAt) {
    var ms = Date.parse(expiresAt) - Date.now();
    if (!(ms > 0)) return;
    timers.expiry = setTimeout(function () {
      if (!flow || isFinal(ui.status.getAttribute("data-state"))) return;
      closeConnect();
      hideMfa();
      setStatus("error", "Not linked.", null);
      showError("flow_expired", PROBLEM_WORDS.flow_expired);
      ui.restart.hidden = false;
    }, Math.min(ms, 2147483647));
  }

  function isFinal(state) {
    return state === "connected" || state === "failed" || state === "error";
  }

  // -- (a) Flinks Connect --------------------------------------------------------------------

  function startConnect() {
    reset();
    ui.connectStart.disabled = true;
    setStatus("busy", "Starting a link session…", null);
    // return_url: where the BFF's landing page sends the browser back, should Connect navigate
    // the whole window (see onConnectMessage). Exactly one of BFF_RETURN_URLS, like OAuth's.
    api("POST", "/v1/connect/sessions", { language: "en", return_url: returnUrl() })
      .then(openConnect)
      .catch(function (error) {
        showProblem(error);
      })
      .then(updateStartButtons);
  }

  function openConnect(session) {
    var origin;
    try {
      origin = new URL(session.iframe_url).origin;
    } catch (e) {
      origin = null;
    }
    // The iframe must come from the origin the BFF told us to trust, or nothing will be.
    if (!FLOW_ID.test(session.flow_id) || !origin || origin !== session.connect_origin) {
      throw new ApiError({ code: "unexpected_response" }, 201);
    }
    flow = { id: session.flow_id, kind: "connect", expiresAt: session.expires_at };
    var frame = document.createElement("iframe");
    frame.id = "connect-frame";
    frame.className = "connect-frame";
    frame.title = "Flinks Connect: sign in to your bank";
    frame.src = session.iframe_url;
    connect = { frame: frame, origin: session.connect_origin, done: false, institution: null };
    ui.connectSlot.replaceChildren(frame);
    ui.connectPanel.hidden = false;
    ui.workspace.classList.add("with-connect");
    connectStatus(STEP_STATUS.APP_MOUNTED);
    addStep("Link session started.");
    watchExpiry(session.expires_at);
    // On a phone the panel is below the two ways to link: bring the whole Flinks window up.
    reveal(ui.connectPanel);
  }

  // Shows one of STEP_STATUS's entries, and remembers it (to come back to after APP_OFFLINE).
  function connectStatus(entry, remember) {
    var bank = bankName(connect.institution);
    var Bank = bank.charAt(0).toUpperCase() + bank.slice(1);
    function fill(text) {
      return text && text.replace("{bank}", bank).replace("{Bank}", Bank);
    }
    setStatus(entry[0], fill(entry[1]), fill(entry[2]));
    if (remember !== false) connect.shown = entry;
  }

  // Connect talks to this page with window.postMessage. Any window can post to this page (a
  // tab that opened it, a frame, an extension), so a message is trusted only if:
  //   1. it comes from the Connect origin the BFF named in connect_origin (exact match,
  //      scheme + host + port; never a prefix, "endsWith" or regex test), and
  //   2. it comes from the very iframe this page created, and
  //   3. its data has the shape Connect sends; anything else is dropped without a trace.
  window.addEventListener("message", function (event) {
    if (!connect || connect.done) return;
    if (event.origin !== connect.origin) return;
    if (event.source !== connect.frame.contentWindow) return;
    var message = connectMessage(event.data);
    if (message) onConnectMessage(message);
  });

  // The fields this page uses, checked; null if the data is not a Connect event.
  function connectMessage(data) {
    if (typeof data === "string") {
      // With stringify=true Connect posts JSON strings.
      try {
        data = JSON.parse(data);
      } catch (e) {
        return null;
      }
    }
    if (!data || typeof data !== "object" || Array.isArray(data)) return null;
    var step = typeof data.step === "string" ? data.step : data.flinksCode;
    if (typeof step !== "string" || !STEP.test(step)) return null;
    var institution = isInstitution(data.institution) ? data.institution : null;
    if (step === "REDIRECT") return redirectMessage(data, institution);
    return { step: step, institution: institution };
  }

  // REDIRECT comes in two shapes, and some Connect pages send both at once:
  //   {step, institution, url: "<redirectUrl>?loginId=…&institution=…"}  (Flinks' documented
  //     example: the loginId only inside url), and
  //   {step, institution, loginId, requestId}                             (newer pages).
  // Where both are present they must agree; anything odd drops the whole message.
  function redirectMessage(data, institution) {
    var loginId = null;
    if (data.loginId !== undefined) {
      if (typeof data.loginId !== "string" || !LOGIN_ID.test(data.loginId)) return null;
      loginId = data.loginId;
    }
    if (data.url !== undefined) {
      var fromUrl = redirectUrlLogin(data.url);
      if (!fromUrl) return null;
      if (loginId !== null && loginId.toLowerCase() !== fromUrl.loginId.toLowerCase()) return null;
      if (fromUrl.institution) {
        if (data.institution !== undefined && data.institution !== fromUrl.institution) return null;
        institution = fromUrl.institution;
      }
      loginId = fromUrl.loginId;
    }
    if (loginId === null) return null;
    return { step: "REDIRECT", loginId: loginId, institution: institution };
  }

  // The loginId inside REDIRECT's url. That url is only read here: never followed, shown or
  // stored. It is read only when it is what this flow asked Connect for: our own landing page
  // for this very flow (the BFF's redirectUrl, on this origin), or a page on Connect's own
  // origin (what Connect reports when it has no redirectUrl). Anything else (another site, a
  // script: or data: URL, credentials in the URL, the loginId twice or in the fragment) is
  // refused: a url naming another place is not a REDIRECT this page asked for.
  function redirectUrlLogin(text) {
    if (typeof text !== "string" || text.length > 2048) return null;
    var url;
    try {
      url = new URL(text); // absolute only: no base
    } catch (e) {
      return null;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") return null;
    if (url.username || url.password) return null;
    var ours = url.origin === window.location.origin && url.pathname === LANDING_PATH + flow.id;
    if (!ours && url.origin !== connect.origin) return null;
    var loginIds = url.searchParams.getAll("loginId");
    if (loginIds.length !== 1 || !LOGIN_ID.test(loginIds[0])) return null;
    if (/loginid/i.test(url.hash)) return null;
    var institutions = url.searchParams.getAll("institution");
    if (institutions.length > 1) return null;
    if (institutions.length === 1 && !isInstitution(institutions[0])) return null;
    return { loginId: loginIds[0], institution: institutions[0] || null };
  }

  function onConnectMessage(message) {
    var step = message.step;
    if (isInstitution(message.institution)) connect.institution = message.institution;
    if (step === "REDIRECT") {
      connect.done = true; // one loginId per flow: later messages are ignored
      addStep(STEP_WORDS.REDIRECT);
      revealResult = true;
      // Removing the iframe also stops a navigation Connect may have scheduled to redirectUrl
      // (a Connect that ignores jsRedirect). One that already started ends on the BFF's landing
      // page, which completes the same flow with the same loginId: the BFF answers the second
      // completion with the flow's status and makes no second Flinks call.
      closeConnect();
      completeConnect(message.loginId, message.institution);
      return;
    }
    var final = wordsFor(TERMINAL_STEP_WORDS, step);
    if (final) {
      addStep(final, "error");
      endConnect(step.toLowerCase(), final);
      return;
    }
    var error = wordsFor(ERROR_WORDS, step.toLowerCase());
    if (error) {
      // Connect shows the error too and offers its own "Try again": the session goes on.
      var code = step.toLowerCase();
      addStep(error, "error");
      if (code === "access_denied" || code === "session_nonexistent") {
        endConnect(code, error + " Please start again.");
      } else if (code === "disabled_login" || code === "disabled_institution") {
        connectStatus(REFUSED_STATUS);
        showError(code, error);
      } else {
        connectStatus(RETRY_STATUS);
        showError(code, error + " You can try again in the Flinks window.");
      }
      return;
    }
    if (step === "COMPONENT_LOAD_CREDENTIAL_RETRY" || step === "COMPONENT_LOAD_MFA_RETRY") {
      clearError();
    }
    if (step === "APP_ONLINE" && connect.shown) {
      connectStatus(connect.shown);
    } else if (wordsFor(STEP_STATUS, step)) {
      connectStatus(STEP_STATUS[step], step !== "APP_OFFLINE");
    }
    var words = wordsFor(STEP_WORDS, step);
    addStep(words ? words.replace("{bank}", bankName(message.institution)) : "Flinks Connect moved on to another step.");
  }

  function endConnect(code, words) {
    connect.done = true;
    closeConnect();
    stopTimers();
    setStatus("failed", "Not linked.", null);
    showError(code, words);
    ui.restart.hidden = false;
    reveal(ui.result);
  }

  function completeConnect(loginId, institution) {
    // The loginId goes to our own BFF, same origin, and nowhere else: not into the URL, storage,
    // logs or analytics. The BFF binds it to this flow once and authorizes it server-side.
    var body = { login_id: loginId };
    if (institution) body.institution = institution;
    setStatus("busy", "Finishing the link…", "Our server is checking the account with Flinks.");
    // keepalive: should Connect take the window to the landing page meanwhile, this request
    // still ends, and the session cookie the BFF renews on success is still stored.
    var path = "/v1/connect/sessions/" + encodeURIComponent(flow.id) + "/complete";
    api("POST", path, body, true).then(
      showFlow,
      function (error) {
        showProblem(error);
      }
    );
  }

  // -- (b) OAuth -----------------------------------------------------------------------------

  // return_url must be exactly one of the BFF's allowed return URLs (BFF_RETURN_URLS): this
  // page lives at "/", so it is this origin plus "/" (no path, query or fragment of ours).
  function returnUrl() {
    return window.location.origin + "/";
  }

  // jwt mode: a navigation carries no bearer token, so the flow starts with a fetch (which does)
  // and the page then goes to the bank. The BFF's session cookie, issued to this user with the
  // flow, carries it through the bank's return to the callback.
  function startOAuth(event) {
    if (config.ready && config.auth !== "jwt") return; // the link navigates to /v1/oauth/start
    event.preventDefault();
    if (!config.ready || !canCallApi()) return;
    reset();
    setStatus("busy", "Starting a link session…", null);
    var body = { institution: INSTITUTION, return_url: returnUrl(), language: "en" };
    api("POST", "/v1/oauth/sessions", body).then(
      function (session) {
        var url = null;
        try {
          url = new URL(session.authorize_url);
        } catch (e) {
          url = null;
        }
        if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
          throw new ApiError({ code: "unexpected_response" }, 201);
        }
        window.location.assign(url.href);
      }
    ).catch(showProblem);
  }

  function oauthStartUrl() {
    var query = new URLSearchParams({
      institution: INSTITUTION,
      return_url: returnUrl(),
      language: "en"
    });
    return "/v1/oauth/start?" + query.toString();
  }

  // Back from the bank (the OAuth callback) or from the BFF's Connect landing page:
  // /?flow_id=...&status=...[&error=...]. The query is a hint, not a fact: anyone can craft
  // this URL. The flow's real status comes from the BFF, which answers only the browser session
  // that started the flow.
  function readReturn() {
    var query = new URLSearchParams(window.location.search);
    if (!query.has("flow_id")) return;
    var flowId = query.get("flow_id");
    // Keep the flow id out of the address bar, history and bookmarks.
    window.history.replaceState(null, "", window.location.pathname);
    if (!FLOW_ID.test(flowId)) {
      setStatus("error", "Not linked.", null);
      showError("flow_not_found", PROBLEM_WORDS.flow_not_found);
      ui.restart.hidden = false;
      reveal(ui.result);
      return;
    }
    flow = { id: flowId, kind: null, expiresAt: null };
    revealResult = true;
    addStep("Back from the bank. Asking our server for the result.");
    setStatus("busy", "Checking the result…", null);
    refreshFlow();
  }

  // -- Flow status ---------------------------------------------------------------------------

  function refreshFlow() {
    if (!flow) return;
    var current = flow;
    api("GET", flowPath(current.id)).then(
      function (data) {
        if (flow === current) showFlow(data);
      },
      function (error) {
        if (flow === current) showProblem(error);
      }
    );
  }

  // Renders a flow status: {flow_id, kind, status, institution?, mfa?, error?, expires_at, ...}
  function showFlow(data) {
    if (!flow || data.flow_id !== flow.id) return;
    clearTimeout(timers.poll);
    ui.checkAgain.hidden = true;
    hideMfa();
    var bank = bankName(data.institution);
    var expired = Date.parse(data.expires_at) <= Date.now();
    var how = data.kind === "oauth" ? "OAuth" : "Flinks Connect";

    if (data.status === "connected") {
      stopTimers();
      clearError();
      setStatus("connected", "Your " + bank + " account is linked.", "Linked with " + how + ".");
      showFacts([
        ["Bank", bank],
        ["Method", how],
        ["Flow", data.flow_id]
      ]);
      addStep("Account linked.", "done");
      ui.restart.hidden = false;
      ui.restart.textContent = "Link another account";
      // The new link joins the list, and its accounts show below.
      if (typeof data.link_id === "string" && LINK_ID.test(data.link_id)) loadLinks(data.link_id);
    } else if (data.status === "failed") {
      stopTimers();
      var code = data.error && typeof data.error.code === "string" ? data.error.code : "flinks_error";
      var words =
        wordsFor(ERROR_WORDS, code) ||
        (data.error && typeof data.error.message === "string" && data.error.message) ||
        ERROR_WORDS.flinks_error;
      setStatus("failed", "Not linked.", null);
      showError(code, words);
      addStep(words, "error");
      ui.restart.hidden = false;
    } else if (expired) {
      stopTimers();
      setStatus("error", "Not linked.", null);
      showError("flow_expired", PROBLEM_WORDS.flow_expired);
      ui.restart.hidden = false;
    } else if (data.status === "mfa_required" && data.mfa && Array.isArray(data.mfa.challenges)) {
      setStatus("mfa_required", bank + " asks a security question.", "Answer it below to finish.");
      addStep("The bank asked a security question (on this page).");
      showMfa(data.mfa);
    } else {
      // started, authorizing, pending: the bank is still working; read the status again later.
      setStatus("pending", "The bank is still working on it…", "This page checks again by itself.");
      schedulePoll();
    }
    revealResultOnce();
  }

  function schedulePoll() {
    if (pollCount >= POLL_DELAYS_MS.length) {
      ui.status.appendChild(el("p", "status-detail", "Still waiting. Check again in a little while."));
      ui.checkAgain.hidden = false;
      return;
    }
    timers.poll = setTimeout(refreshFlow, POLL_DELAYS_MS[pollCount]);
    pollCount += 1;
  }

  // -- (c) MFA -------------------------------------------------------------------------------
  // mfa: {challenges: [{type, prompt, choices}], attempt}. Every challenge is answered in one
  // request, keyed by its exact prompt: {responses: {"<prompt>": [answers]}}. Each of Flinks'
  // challenge types gets the control a person expects:
  //   QuestionAndAnswer            a text field; with choices, radio buttons (one of them)
  //   MultipleChoice               radio buttons (one of the choices)
  //   MultipleChoiceMultipleAnswers  checkboxes (one or more)
  //   ImageSelection               a grid of pictures, choose one; the answer is the choice
  //                                string itself (a base64 PNG, shown as a data: URL)
  //   TextOrCall                   the phone numbers and Text or Call: [number, "Text"|"Call"];
  //                                the code sent is then asked as a QuestionAndAnswer
  // A type this page does not know is shown as radio buttons if it has choices, else as text.

  var PNG_BASE64 = /^[A-Za-z0-9+/]{1,65536}={0,2}$/;
  var TEXT_OR_CALL_METHODS = ["Text", "Call"];

  function choicesOf(challenge) {
    return Array.isArray(challenge.choices)
      ? challenge.choices.filter(function (c) { return typeof c === "string" && c !== ""; })
      : [];
  }

  function showMfa(mfa) {
    ui.mfaFields.replaceChildren();
    var count = 0;
    mfa.challenges.forEach(function (challenge, index) {
      if (!challenge || typeof challenge.prompt !== "string" || !challenge.prompt) return;
      ui.mfaFields.appendChild(mfaField(challenge, "mfa-" + index));
      count += 1;
    });
    // attempt counts the answers to this MFA step: past the first, the bank refused one.
    ui.mfaRetry.hidden = !(typeof mfa.attempt === "number" && mfa.attempt > 1);
    ui.mfaSubmit.textContent = count > 1 ? "Send answers" : "Send answer";
    setFormBusy(false);
    ui.mfaForm.hidden = false;
    var first = ui.mfaForm.querySelector("input");
    if (first) first.focus();
  }

  function mfaField(challenge, id) {
    var choices = choicesOf(challenge);
    var type = challenge.type;
    var field;
    if (type === "TextOrCall" && choices.length) {
      field = choiceGroup(challenge.prompt, id, "text-or-call");
      field.appendChild(options(id + "-phone", "radio", choices, "Phone number"));
      field.appendChild(options(id + "-method", "radio", TEXT_OR_CALL_METHODS, "Send the code by"));
    } else if (type === "ImageSelection" && choices.length) {
      field = choiceGroup(challenge.prompt, id, "image");
      field.appendChild(pictures(id, choices.filter(function (c) { return PNG_BASE64.test(c); })));
    } else if (type === "MultipleChoiceMultipleAnswers" && choices.length) {
      field = choiceGroup(challenge.prompt, id, "several");
      field.appendChild(el("p", "field-hint", "Choose every answer that applies."));
      field.appendChild(options(id, "checkbox", choices, null));
    } else if (choices.length) {
      field = choiceGroup(challenge.prompt, id, "one");
      field.appendChild(options(id, "radio", choices, null));
    } else {
      field = el("div", "field");
      field.setAttribute("data-kind", "text");
      var label = el("label", "field-label", challenge.prompt);
      label.htmlFor = id;
      var input = el("input", "field-input");
      input.id = id;
      input.name = id;
      input.type = "text";
      input.autocomplete = "off";
      input.required = true;
      field.append(label, input);
    }
    field.setAttribute("data-prompt", challenge.prompt);
    return field;
  }

  // A fieldset whose legend is the prompt: radio buttons and checkboxes are named by it.
  function choiceGroup(prompt, id, kind) {
    var group = el("fieldset", "field choice-group");
    group.id = id;
    group.setAttribute("data-kind", kind);
    group.appendChild(el("legend", "field-label", prompt));
    return group;
  }

  // Radio buttons or checkboxes, one per value; with a caption, in a group of their own.
  function options(name, type, values, caption) {
    var list = el(caption ? "fieldset" : "div", "choice-list");
    if (caption) list.appendChild(el("legend", "field-hint", caption));
    values.forEach(function (value, index) {
      var input = el("input", "choice-input");
      input.type = type;
      input.name = name;
      input.id = name + "-" + index;
      input.value = value;
      var label = el("label", "choice", "");
      label.htmlFor = input.id;
      label.append(input, el("span", "choice-text", value));
      list.appendChild(label);
    });
    return list;
  }

  function pictures(name, values) {
    var grid = el("div", "picture-grid");
    values.forEach(function (value, index) {
      var input = el("input", "choice-input picture-input");
      input.type = "radio";
      input.name = name;
      input.id = name + "-" + index;
      input.value = value;
      var image = el("img", "picture-image");
      image.src = "data:image/png;base64," + value;
      image.alt = "Picture " + (index + 1) + " of " + values.length;
      var label = el("label", "picture");
      label.htmlFor = input.id;
      label.append(input, image);
      grid.appendChild(label);
    });
    return grid;
  }

  function checkedValues(field, name) {
    var selector = 'input[name="' + name + '"]:checked';
    return Array.prototype.map.call(field.querySelectorAll(selector), function (input) {
      return input.value;
    });
  }

  // The answer a field holds, as the BFF wants it, or null if it has none yet.
  function answerOf(field) {
    var kind = field.getAttribute("data-kind");
    if (kind === "text") {
      var text = field.querySelector("input").value.trim();
      return text ? [text] : null;
    }
    if (kind === "text-or-call") {
      var phone = checkedValues(field, field.id + "-phone");
      var method = checkedValues(field, field.id + "-method");
      return phone.length === 1 && method.length === 1 ? [phone[0], method[0]] : null;
    }
    var values = checkedValues(field, field.id);
    if (kind === "several") return values.length ? values : null;
    return values.length === 1 ? values : null;
  }

  function hideMfa() {
    ui.mfaForm.hidden = true;
    ui.mfaRetry.hidden = true;
    ui.mfaFields.replaceChildren();
  }

  function setFormBusy(busy) {
    Array.prototype.forEach.call(ui.mfaForm.querySelectorAll("input, button"), function (node) {
      node.disabled = busy;
    });
  }

  function submitMfa(event) {
    event.preventDefault();
    if (!flow) return;
    var responses = {};
    var missing = null;
    Array.prototype.forEach.call(ui.mfaFields.querySelectorAll("[data-prompt]"), function (field) {
      var answer = answerOf(field);
      if (!answer && !missing) missing = field;
      responses[field.getAttribute("data-prompt")] = answer;
    });
    if (missing) {
      showError("answer_missing", "Please answer the security question.");
      missing.querySelector("input").focus();
      return;
    }
    clearError();
    setFormBusy(true);
    setStatus("busy", "Sending your answer…", null);
    addStep("Security answer sent to the bank.");
    api("POST", flowPath(flow.id) + "/mfa", { responses: responses }).then(showFlow, function (error) {
      hideMfa();
      showProblem(error);
    });
  }

  // -- (d) Who you are (BFF_AUTH=jwt, development issuer) ------------------------------------
  // {sub, token, expires_at} in sessionStorage: this tab only, gone when it closes. The token
  // is for our own BFF and goes nowhere else; the user name is only shown.

  function storedIdentity() {
    var raw = null;
    try {
      raw = window.sessionStorage.getItem(IDENTITY_KEY);
    } catch (e) {
      return null;
    }
    if (!raw) return null;
    var identity = null;
    try {
      identity = JSON.parse(raw);
    } catch (e) {
      identity = null;
    }
    var valid =
      identity &&
      typeof identity.sub === "string" &&
      USER_NAME.test(identity.sub) &&
      typeof identity.token === "string" &&
      JWT.test(identity.token) &&
      Date.parse(identity.expires_at) > Date.now();
    if (!valid) {
      dropIdentity();
      return null;
    }
    return { sub: identity.sub, token: identity.token, expires_at: identity.expires_at };
  }

  function sameIdentity(a, b) {
    return Boolean(a && b && a.token === b.token);
  }

  function dropIdentity() {
    try {
      window.sessionStorage.removeItem(IDENTITY_KEY);
    } catch (e) {
      // Storage refused (a privacy mode): nothing was kept either.
    }
  }

  // Every /v1 call needs an identity in jwt mode; the other modes bring their own.
  function canCallApi() {
    return config.auth !== "jwt" || storedIdentity() !== null;
  }

  function updateStartButtons() {
    var able = config.ready && canCallApi();
    ui.connectStart.disabled = !able;
    if (able) ui.oauthStart.removeAttribute("aria-disabled");
    else ui.oauthStart.setAttribute("aria-disabled", "true");
  }

  function showIdentity() {
    var offered = config.auth === "jwt" && config.devIssuer !== null;
    ui.identity.hidden = !offered;
    if (!offered) return;
    var identity = storedIdentity();
    ui.signInForm.hidden = identity !== null;
    ui.signedIn.hidden = identity === null;
    ui.signedInName.textContent = identity ? identity.sub : "";
    ui.signInButton.disabled = false;
  }

  function showIdentityError(words) {
    ui.identityError.textContent = words;
    ui.identityError.hidden = false;
  }

  function identityChanged() {
    reset();
    forgetLinks();
    showIdentity();
    updateStartButtons();
    loadLinks(null);
  }

  function forgetIdentity(words) {
    dropIdentity();
    identityChanged();
    if (words) showIdentityError(words);
  }

  function signIn(event) {
    event.preventDefault();
    var issuer = config.devIssuer;
    if (!issuer) return;
    var name = ui.signInName.value.trim();
    if (!USER_NAME.test(name)) {
      showIdentityError(
        "Enter a user name: letters, digits and . _ @ -, starting with a letter or digit."
      );
      ui.signInName.focus();
      return;
    }
    ui.identityError.hidden = true;
    ui.signInButton.disabled = true;
    // The sandbox's issuer, on its own origin (CORS, no cookies): {token, expires_at, ...}.
    fetch(issuer.tokenUrl, {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify({ sub: name, audience: issuer.audience })
    })
      .then(function (response) {
        if (!response.ok) throw new Error("refused");
        return response.json();
      })
      .then(function (data) {
        var identity = {
          sub: name,
          token: data && data.token,
          expires_at: data && data.expires_at
        };
        window.sessionStorage.setItem(IDENTITY_KEY, JSON.stringify(identity));
        if (!storedIdentity()) throw new Error("unusable");
        ui.signInName.value = "";
        identityChanged();
      })
      .catch(function () {
        ui.signInButton.disabled = false;
        showIdentityError("The development sign-in did not answer. Is the sandbox running?");
      });
  }

  function signOut() {
    forgetIdentity(null);
    ui.signInName.focus();
  }

  // -- (e) Linked accounts -------------------------------------------------------------------
  // GET /v1/links: [{link_id, institution, status, created_at, refreshed_at}], newest first.

  var linksLoad = 0; // the latest GET /v1/links; an older answer is dropped

  function linkPath(linkId) {
    return "/v1/links/" + encodeURIComponent(linkId);
  }

  function forgetLinks() {
    linksLoad += 1;
    showLinks([]);
    ui.linksError.hidden = true;
    hideData();
  }

  // Reads the list again; shows `select`'s data if it is listed, else keeps the link shown if
  // it still is, else shows the newest one.
  function loadLinks(select) {
    var load = (linksLoad += 1);
    if (!config.ready) return;
    if (!canCallApi()) {
      showLinks([]);
      ui.linksEmpty.textContent = "Sign in to see your linked accounts.";
      hideData();
      return;
    }
    api("GET", "/v1/links").then(
      function (data) {
        if (load !== linksLoad) return;
        ui.linksError.hidden = true;
        var links = Array.isArray(data.links) ? data.links.filter(isLink) : [];
        showLinks(links);
        var ids = links.map(function (link) { return link.link_id; });
        var chosen =
          select && ids.indexOf(select) >= 0
            ? select
            : dataView.linkId && ids.indexOf(dataView.linkId) >= 0
              ? dataView.linkId
              : ids[0] || null;
        if (!chosen) hideData();
        else if (chosen !== dataView.linkId) showData(links[ids.indexOf(chosen)]);
        else markShown();
      },
      function (error) {
        if (load !== linksLoad) return;
        showLinksError(error);
      }
    );
  }

  function isLink(link) {
    return link && typeof link === "object" && typeof link.link_id === "string" &&
      LINK_ID.test(link.link_id);
  }

  function showLinks(links) {
    ui.linksList.replaceChildren();
    ui.linksEmpty.textContent = "No linked accounts yet.";
    ui.linksEmpty.hidden = links.length > 0;
    ui.linksList.hidden = links.length === 0;
    links.forEach(function (link) {
      var item = el("li", "link");
      item.setAttribute("data-link-id", link.link_id);
      var about = el("div", "link-about");
      about.appendChild(el("span", "link-name", bankName(link.institution)));
      var since = shortDate(link.created_at);
      if (since) about.appendChild(el("span", "link-meta", "Linked " + since));
      var buttons = el("div", "link-actions");
      var show = el("button", "button small link-show", "Show accounts");
      show.type = "button";
      show.addEventListener("click", function () {
        showData(link);
      });
      var unlink = el("button", "button small link-unlink", "Unlink");
      unlink.type = "button";
      unlink.addEventListener("click", function () {
        unlinkLink(link, unlink);
      });
      buttons.append(show, unlink);
      item.append(about, buttons);
      ui.linksList.appendChild(item);
    });
    markShown();
  }

  // The link whose data shows is marked in the list.
  function markShown() {
    Array.prototype.forEach.call(ui.linksList.children, function (item) {
      var shown = item.getAttribute("data-link-id") === dataView.linkId;
      item.classList.toggle("shown", shown);
      var show = item.querySelector(".link-show");
      if (show) show.hidden = shown;
    });
  }

  function showLinksError(error) {
    var p = problemWords(error);
    ui.linksError.textContent = p.words;
    ui.linksError.hidden = false;
  }

  // DELETE /v1/links/{id} (204; Flinks forgets the login), then the list is read again.
  function unlinkLink(link, button) {
    button.disabled = true;
    ui.linksError.hidden = true;
    api("DELETE", linkPath(link.link_id)).then(
      function () {
        if (dataView.linkId === link.link_id) hideData();
        loadLinks(null);
      },
      function (error) {
        button.disabled = false;
        showLinksError(error);
        if (error instanceof ApiError && error.httpStatus === 404) loadLinks(null);
      }
    );
  }

  // -- (f) A link's accounts and last transactions -------------------------------------------
  // Accounts first, then the first account's transactions: both come from the same data, which
  // Flinks may still be preparing (202 + Retry-After): the page waits that long, then asks
  // again, once at a time.

  var dataView = { linkId: null, link: null, turn: 0, timer: null };

  function hideData() {
    clearTimeout(dataView.timer);
    dataView.turn += 1;
    dataView.linkId = dataView.link = null;
    ui.data.hidden = true;
    clearData();
    markShown();
  }

  function clearData() {
    ui.dataRetry.hidden = true;
    ui.accounts.replaceChildren();
    ui.accountsBox.hidden = true;
    ui.transactions.replaceChildren();
    ui.transactionsBox.hidden = true;
  }

  function showData(link) {
    clearTimeout(dataView.timer);
    var turn = (dataView.turn += 1);
    dataView.linkId = link.link_id;
    dataView.link = link;
    markShown();
    clearData();
    ui.dataTitle.textContent = bankName(link.institution) + " accounts";
    ui.data.hidden = false;
    dataStatus("busy", "Loading your accounts…", null);
    readAccounts(turn);
  }

  function dataStatus(state, title, detail) {
    ui.dataStatus.setAttribute("data-state", state);
    ui.dataStatus.replaceChildren();
    if (title) ui.dataStatus.appendChild(el("p", "status-title", title));
    if (detail) ui.dataStatus.appendChild(el("p", "status-detail", detail));
  }

  function current(turn) {
    return turn === dataView.turn && dataView.linkId !== null;
  }

  function whenReady(turn, result, again) {
    if (result.status !== 202) return false;
    var seconds = result.retryAfter;
    dataStatus(
      "pending",
      "Preparing your data…",
      "Flinks is gathering the accounts. This page asks again in " + seconds +
        (seconds === 1 ? " second." : " seconds.")
    );
    dataView.timer = setTimeout(function () {
      if (current(turn)) again(turn);
    }, seconds * 1000);
    return true;
  }

  function readAccounts(turn) {
    send("GET", linkPath(dataView.linkId) + "/accounts").then(
      function (result) {
        if (!current(turn) || whenReady(turn, result, readAccounts)) return;
        var accounts = Array.isArray(result.data.accounts)
          ? result.data.accounts.filter(isAccount)
          : [];
        showAccounts(accounts);
        if (accounts.length === 0) {
          dataStatus("ready", "Flinks found no accounts at this bank.", null);
          return;
        }
        dataStatus("busy", "Loading the last transactions…", null);
        readTransactions(turn, accounts[0], result.data.refreshed_at);
      },
      function (error) {
        if (current(turn)) dataFailed(error);
      }
    );
  }

  function readTransactions(turn, account, refreshedAt) {
    var query = new URLSearchParams({
      account_id: account.account_id,
      limit: String(RECENT_TRANSACTIONS)
    });
    var path = linkPath(dataView.linkId) + "/transactions?" + query.toString();
    send("GET", path).then(
      function (result) {
        var again = function (next) {
          readTransactions(next, account, refreshedAt);
        };
        if (!current(turn) || whenReady(turn, result, again)) return;
        var transactions = Array.isArray(result.data.transactions)
          ? result.data.transactions.filter(isTransaction)
          : [];
        showTransactions(account, transactions.slice(0, RECENT_TRANSACTIONS));
        var when = dateTime(refreshedAt);
        dataStatus("ready", null, when ? "From Flinks, " + when.replace(/\.?$/, ".") : null);
      },
      function (error) {
        if (current(turn)) dataFailed(error);
      }
    );
  }

  function dataFailed(error) {
    var p = problemWords(error);
    dataStatus("error", p.words, p.reference ? "Reference: " + p.reference : null);
    if (error instanceof ApiError && error.httpStatus === 404) {
      loadLinks(null); // unlinked meanwhile (another tab): the list says so
      return;
    }
    ui.dataRetry.hidden = false;
  }

  function isAccount(account) {
    return account && typeof account === "object" && typeof account.account_id === "string" &&
      account.account_id !== "";
  }

  function isTransaction(transaction) {
    return transaction && typeof transaction === "object" && typeof transaction.date === "string";
  }

  function showAccounts(accounts) {
    ui.accounts.replaceChildren();
    accounts.forEach(function (account) {
      var row = el("tr", "account");
      var balance = account.balance && typeof account.balance === "object" ? account.balance : {};
      var cell = el("td", "num", money(balance.current, account.currency));
      if (typeof balance.available === "number" && balance.available !== balance.current) {
        cell.appendChild(
          el("span", "available", "Available " + money(balance.available, account.currency))
        );
      }
      row.append(
        el("td", "account-name", text(account.name) || "Account"),
        el("td", "account-type", text(account.type) || "—"),
        el("td", "account-mask", maskText(account.mask)),
        cell
      );
      ui.accounts.appendChild(row);
    });
    ui.accountsBox.hidden = accounts.length === 0;
  }

  function showTransactions(account, transactions) {
    ui.transactionsTitle.textContent =
      "Last transactions: " + (text(account.name) || "account") + " " + maskText(account.mask);
    ui.transactions.replaceChildren();
    transactions.forEach(function (transaction) {
      var amount = money(transaction.amount, account.currency);
      var row = el("tr", "transaction");
      var cell = el("td", "num", amount);
      if (typeof transaction.amount === "number") {
        cell.classList.add(transaction.amount < 0 ? "money-out" : "money-in");
      }
      row.append(
        el("td", "transaction-date", text(transaction.date)),
        el("td", "transaction-description", text(transaction.description) || "—"),
        cell
      );
      ui.transactions.appendChild(row);
    });
    ui.transactionsEmpty.hidden = transactions.length > 0;
    ui.transactionsBox.hidden = false;
  }

  // -- Formatting ----------------------------------------------------------------------------

  function text(value) {
    return typeof value === "string" ? value : "";
  }

  // Never more than the last four digits: anything else is not shown at all.
  function maskText(mask) {
    return typeof mask === "string" && MASK.test(mask) ? "•••• " + mask : "—";
  }

  function money(value, currency) {
    if (typeof value !== "number" || !isFinite(value)) return "—";
    var code = typeof currency === "string" && CURRENCY.test(currency) ? currency : null;
    if (code) {
      try {
        return new Intl.NumberFormat("en-CA", {
          style: "currency",
          currency: code,
          currencyDisplay: "code"
        }).format(value);
      } catch (e) {
        // An ISO code this browser does not know: the number and the code, below.
      }
    }
    var number = new Intl.NumberFormat("en-CA", {
      minimumFractionDigits: 2,
      maximumFractionDigits: 2
    }).format(value);
    return code ? number + " " + code : number;
  }

  function shortDate(value) {
    var time = Date.parse(value);
    if (!(time > 0)) return null;
    return new Date(time).toLocaleDateString("en-CA", {
      year: "numeric",
      month: "short",
      day: "numeric"
    });
  }

  function dateTime(value) {
    var time = Date.parse(value);
    if (!(time > 0)) return null;
    return new Date(time).toLocaleString("en-CA", {
      dateStyle: "medium",
      timeStyle: "short"
    });
  }

  // -- Starting up ---------------------------------------------------------------------------

  function readConfig(data) {
    var issuer = data && data.dev_issuer;
    var devIssuer = null;
    if (issuer && typeof issuer.token_url === "string" && typeof issuer.audience === "string") {
      try {
        var url = new URL(issuer.token_url);
        if (url.protocol === "https:" || url.protocol === "http:") {
          devIssuer = { tokenUrl: url.href, audience: issuer.audience };
        }
      } catch (e) {
        devIssuer = null;
      }
    }
    var auth = data && typeof data.auth === "string" ? data.auth : "session";
    return { auth: auth, devIssuer: devIssuer, ready: true };
  }

  function start() {
    fetch("/web/config.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .catch(function () {
        return null;
      })
      .then(function (data) {
        config = readConfig(data);
        showIdentity();
        updateStartButtons();
        loadLinks(null);
        // Back from the bank: a connected flow reads the list again, showing its own link.
        readReturn();
      });
  }

  // -- Wiring --------------------------------------------------------------------------------

  ui.connectStart.addEventListener("click", startConnect);
  ui.mfaForm.addEventListener("submit", submitMfa);
  ui.restart.addEventListener("click", function () {
    reset();
    ui.connectStart.focus();
  });
  ui.checkAgain.addEventListener("click", function () {
    pollCount = 0;
    ui.checkAgain.hidden = true;
    refreshFlow();
  });
  ui.oauthStart.addEventListener("click", startOAuth);
  ui.signInForm.addEventListener("submit", signIn);
  ui.signOut.addEventListener("click", signOut);
  ui.dataRetry.addEventListener("click", function () {
    if (dataView.link) showData(dataView.link);
  });
  ui.oauthStart.href = oauthStartUrl();
  ui.connectStart.disabled = true; // until the BFF said how callers are identified
  start();
})();
