// Flinks Connect, as the sandbox emulates it: institution -> consent -> credentials -> MFA ->
// accounts -> REDIRECT, with Flinks' postMessage events sent to the parent window.
(function () {
  "use strict";

  var STRINGS = {
    en: {
      chooseInstitution: "Select your financial institution",
      noInstitutions: "No institution is available. Flinks Capital is listed with demo=true.",
      consentTitle: "Share your financial data",
      consentText: "{customer} uses Flinks to connect to your account at {bank}. " +
        "Your credentials are never shared with {customer}.",
      consentAccept: "I agree",
      consentDeny: "I do not agree",
      denied: "You declined to share your data. You can close this window.",
      credentialsTitle: "Sign in to {bank}",
      username: "Username",
      password: "Password",
      submit: "Continue",
      mfaTitle: "Security question",
      mfaIncomplete: "Please answer every question.",
      chooseNumber: "Send the code to",
      chooseMethod: "How should we send it?",
      textMethod: "Text message",
      callMethod: "Phone call",
      image: "Image {n}",
      retry: "Try again",
      accountsTitle: "Select the account to connect",
      accountsTitleMultiple: "Select the accounts to connect",
      connected: "Your account is connected.",
      maximumRetry: "Too many failed attempts. Close this window and start again.",
      tokenMissing: "The authorizeToken parameter is missing. Generate an authorize token and " +
        "load Flinks Connect with it.",
      tokenRefused: "This authorize token is invalid, expired or already used. Generate a new " +
        "one and load Flinks Connect again.",
      failed: "Something went wrong. Close this window and start again.",
      errors: {
        INVALID_LOGIN: "The username or password is incorrect.",
        INVALID_SECURITY_RESPONSE: "The answer to the security question is incorrect.",
        DISABLED_LOGIN: "This account has been disabled by your financial institution.",
        RETRY_LATER: "We could not reach your financial institution. Please try again later.",
        SESSION_NONEXISTENT: "Your session has expired. Please sign in again.",
        UNKNOWN_CHALLENGE_KEY: "Please answer the security question again."
      }
    },
    fr: {
      chooseInstitution: "Choisissez votre institution financière",
      noInstitutions: "Aucune institution n'est disponible. Flinks Capital est affichée avec demo=true.",
      consentTitle: "Partager vos données financières",
      consentText: "{customer} utilise Flinks pour se connecter à votre compte chez {bank}. " +
        "Vos identifiants ne sont jamais communiqués à {customer}.",
      consentAccept: "J'accepte",
      consentDeny: "Je refuse",
      denied: "Vous avez refusé de partager vos données. Vous pouvez fermer cette fenêtre.",
      credentialsTitle: "Connexion à {bank}",
      username: "Nom d'utilisateur",
      password: "Mot de passe",
      submit: "Continuer",
      mfaTitle: "Question de sécurité",
      mfaIncomplete: "Veuillez répondre à toutes les questions.",
      chooseNumber: "Envoyer le code au",
      chooseMethod: "Comment voulez-vous le recevoir?",
      textMethod: "Texto",
      callMethod: "Appel téléphonique",
      image: "Image {n}",
      retry: "Réessayer",
      accountsTitle: "Choisissez le compte à connecter",
      accountsTitleMultiple: "Choisissez les comptes à connecter",
      connected: "Votre compte est connecté.",
      maximumRetry: "Trop de tentatives infructueuses. Fermez cette fenêtre et recommencez.",
      tokenMissing: "Le paramètre authorizeToken est absent. Générez un jeton d'autorisation et " +
        "chargez Flinks Connect avec celui-ci.",
      tokenRefused: "Ce jeton d'autorisation est invalide, expiré ou déjà utilisé. Générez-en un " +
        "nouveau et chargez Flinks Connect de nouveau.",
      failed: "Une erreur est survenue. Fermez cette fenêtre et recommencez.",
      errors: {
        INVALID_LOGIN: "Le nom d'utilisateur ou le mot de passe est incorrect.",
        INVALID_SECURITY_RESPONSE: "La réponse à la question de sécurité est incorrecte.",
        DISABLED_LOGIN: "Ce compte a été désactivé par votre institution financière.",
        RETRY_LATER: "Impossible de joindre votre institution financière. Réessayez plus tard.",
        SESSION_NONEXISTENT: "Votre session a expiré. Veuillez vous reconnecter.",
        UNKNOWN_CHALLENGE_KEY: "Veuillez répondre de nouveau à la question de sécurité."
      }
    }
  };
  var INSTITUTION = "FlinksCapital";
  var INSTITUTION_NAME = "Flinks Capital";
  var BLOCKED_SCHEMES = ["javascript:", "data:", "vbscript:", "blob:", "file:", "about:"];
  var REDIRECT_DELAY_MS = 150;

  var search = new URLSearchParams(window.location.search);

  // Flinks reads its URL parameters without regard to case (tag and Tag both work).
  function param(name) {
    var wanted = name.toLowerCase();
    var found = null;
    search.forEach(function (value, key) {
      if (found === null && key.toLowerCase() === wanted) found = value;
    });
    return found;
  }

  function flag(name, fallback) {
    var value = param(name);
    return value === null || value === "" ? fallback : value.toLowerCase() === "true";
  }

  function positiveInt(value) {
    var n = value === null ? NaN : parseInt(value, 10);
    return n > 0 ? n : null;
  }

  var token = param("authorizeToken");
  if (token === "" || (token !== null && token.toLowerCase() === "false")) token = null;
  // Switches of the sandbox (not Flinks parameters): the REDIRECT message's shape, and whether
  // jsRedirect (absent from Flinks' parameter list) is honoured or ignored.
  var page = document.body;
  var cfg = {
    token: token,
    tokenRequired: page.getAttribute("data-token-required") === "true",
    redirectMessage: page.getAttribute("data-redirect-message") || "both",
    demo: flag("demo", false),
    language: (param("language") || "en").toLowerCase().indexOf("fr") === 0 ? "fr" : "en",
    redirectUrl: param("redirectUrl"),
    innerRedirect: flag("innerRedirect", false),
    jsRedirect: flag("jsRedirect", false) && page.getAttribute("data-js-redirect") !== "ignore",
    tag: param("tag"),
    consentEnable: flag("consentEnable", true),
    customerName: param("customerName") || "FinTech",
    accountSelectorEnable: flag("accountSelectorEnable", false),
    accountSelectorMultiple: flag("accountSelectorMultiple", false),
    accountSelectorCurrency: (param("accountSelectorCurrency") || "").toUpperCase() || null,
    maximumRetry: positiveInt(param("maximumRetry")),
    scheduleRefresh: flag("scheduleRefresh", false),
    stringify: flag("stringify", false)
  };
  var t = STRINGS[cfg.language];
  document.documentElement.lang = cfg.language;

  var app = document.getElementById("app");
  var sessionId = null;

  function emit(data) {
    window.parent.postMessage(cfg.stringify ? JSON.stringify(data) : data, "*");
  }

  function fill(text) {
    return text.split("{bank}").join(INSTITUTION_NAME).split("{customer}").join(cfg.customerName);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  function show(nodes) {
    while (app.firstChild) app.removeChild(app.firstChild);
    nodes.forEach(function (node) { app.appendChild(node); });
    var focus = app.querySelector("input, button");
    if (focus) focus.focus();
  }

  function message(id, className, text) {
    show([el("p", { id: id, className: className, role: "alert", text: text })]);
  }

  function api(path, body) {
    return fetch("/v2/api/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    });
  }

  function busy(form, on) {
    Array.prototype.forEach.call(form.querySelectorAll("button, input"), function (node) {
      node.disabled = on;
    });
  }

  function refuseToken(text) {
    emit({ step: "ACCESS_DENIED", flinksCode: "ACCESS_DENIED", institution: null });
    message("fatal", "error", text);
  }

  function start() {
    emit({ step: "APP_MOUNTED" });
    if (!cfg.token) {
      if (cfg.tokenRequired) return refuseToken(t.tokenMissing);
      return showInstitutions();
    }
    api("token", { authorizeToken: cfg.token }).then(function (result) {
      if (result.status === 200) showInstitutions();
      else refuseToken(t.tokenRefused);
    }, function () { message("fatal", "error", t.failed); });
  }

  function showInstitutions() {
    emit({ step: "COMPONENT_LOAD_INSTITUTION_SELECTOR", cached: false });
    var nodes = [el("h1", { text: t.chooseInstitution })];
    if (cfg.demo) {
      var button = el("button", {
        id: "institution-" + INSTITUTION, type: "button", className: "institution",
        text: INSTITUTION_NAME
      });
      button.addEventListener("click", function () {
        emit({ step: "INSTITUTION_SELECTED", institution: INSTITUTION });
        if (cfg.consentEnable) showConsent(); else showCredentials(false);
      });
      nodes.push(button);
    } else {
      nodes.push(el("p", { id: "no-institutions", className: "muted", text: t.noInstitutions }));
    }
    show(nodes);
  }

  function showConsent() {
    emit({ step: "COMPONENT_LOAD_CONSENT", institution: INSTITUTION });
    var accept = el("button", { id: "consent-accept", type: "button", text: t.consentAccept });
    var deny = el("button", {
      id: "consent-deny", type: "button", className: "secondary", text: t.consentDeny
    });
    accept.addEventListener("click", function () {
      emit({ step: "COMPONENT_ACCEPT_CONSENT", institution: INSTITUTION });
      showCredentials(false);
    });
    deny.addEventListener("click", function () {
      emit({ step: "COMPONENT_DENY_CONSENT", institution: INSTITUTION });
      message("denied", "muted", t.denied);
    });
    show([
      el("h1", { text: t.consentTitle }),
      el("p", { id: "consent-text", text: fill(t.consentText) }),
      accept,
      deny
    ]);
  }

  function showCredentials(retry) {
    emit({
      step: retry ? "COMPONENT_LOAD_CREDENTIAL_RETRY" : "COMPONENT_LOAD_CREDENTIAL",
      institution: INSTITUTION
    });
    var username = el("input", { id: "username", type: "text", autocomplete: "username" });
    var password = el("input", { id: "password", type: "password", autocomplete: "current-password" });
    var form = el("form", { id: "credentials-form", novalidate: "" }, [
      el("label", { "for": "username", text: t.username }), username,
      el("label", { "for": "password", text: t.password }), password,
      el("button", { id: "submit-credentials", type: "submit", text: t.submit })
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      emit({ step: "SUBMIT_CREDENTIAL", institution: INSTITUTION });
      busy(form, true);
      var body = {
        institution: INSTITUTION,
        username: username.value,
        password: password.value,
        language: cfg.language,
        tag: cfg.tag,
        maximumRetry: cfg.maximumRetry,
        scheduleRefresh: cfg.scheduleRefresh
      };
      if (sessionId) body.session = sessionId; else body.authorizeToken = cfg.token;
      api("credentials", body).then(handle, failed);
    });
    show([el("h1", { text: fill(t.credentialsTitle) }), form]);
  }

  // One group of radio buttons or checkboxes; returns the inputs.
  function options(id, values, type, labelFor, children) {
    return values.map(function (value, index) {
      var input = el("input", { id: id + "-" + index, type: type, name: id, value: value });
      children.push(el("label", { className: "choice", "for": id + "-" + index }, [
        input, labelFor(value, index)
      ]));
      return input;
    });
  }

  function checked(inputs) {
    return inputs.filter(function (input) { return input.checked; })
      .map(function (input) { return input.value; });
  }

  function text(value) { return el("span", { text: value }); }

  // Renders one challenge of Flinks' SecurityChallenges into `children`; returns a function
  // that reads its SecurityResponses entry as [key, answers], or null when it is unanswered.
  function challengeInput(challenge, index, children) {
    var id = "mfa-answer-" + index;
    var choices = challenge.choices || [];
    var prompt = challenge.prompt;
    children.push(el("p", { id: "mfa-prompt-" + index, className: "prompt", text: prompt }));
    if (challenge.type === "TextOrCall") {
      children.push(el("p", { className: "muted", text: t.chooseNumber }));
      var phones = options("mfa-phone-" + index, choices, "radio", text, children);
      children.push(el("p", { className: "muted", text: t.chooseMethod }));
      var methods = options("mfa-method-" + index, ["Text", "Call"], "radio", function (m) {
        return text(m === "Text" ? t.textMethod : t.callMethod);
      }, children);
      return function () {
        var phone = checked(phones), method = checked(methods);
        return phone.length && method.length ? [phone[0], method] : null;
      };
    }
    if (challenge.type === "ImageSelection") {
      var pictures = options(id, choices, "radio", function (value, n) {
        return el("img", {
          src: "data:image/png;base64," + value, alt: t.image.split("{n}").join(String(n + 1))
        });
      }, children);
      return function () { var v = checked(pictures); return v.length ? [prompt, v] : null; };
    }
    if (choices.length) {
      var several = challenge.type === "MultipleChoiceMultipleAnswers";
      var boxes = options(id, choices, several ? "checkbox" : "radio", text, children);
      return function () { var v = checked(boxes); return v.length ? [prompt, v] : null; };
    }
    var input = el("input", { id: id, type: "text", autocomplete: "off", "aria-labelledby": "mfa-prompt-" + index });
    children.push(input);
    return function () { return input.value ? [prompt, [input.value]] : null; };
  }

  function showMfa(data, retry) {
    emit({
      step: retry ? "COMPONENT_LOAD_MFA_RETRY" : "COMPONENT_LOAD_MFA",
      institution: INSTITUTION, mfaTypes: data.mfaTypes
    });
    var children = [];
    if (data.error) {
      children.push(el("p", { id: "mfa-error", className: "error", role: "alert",
        "data-code": data.error, text: t.errors[data.error] || t.failed }));
    }
    var readers = data.challenges.map(function (challenge, index) {
      return challengeInput(challenge, index, children);
    });
    var missing = el("p", { id: "mfa-incomplete", className: "error", role: "alert", hidden: "" });
    children.push(missing);
    children.push(el("button", { id: "submit-mfa", type: "submit", text: t.submit }));
    var form = el("form", { id: "mfa-form", novalidate: "" }, children);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var responses = {};
      var complete = readers.every(function (read) {
        var entry = read();
        if (entry) responses[entry[0]] = entry[1];
        return entry !== null;
      });
      if (!complete) {
        missing.textContent = t.mfaIncomplete;
        missing.hidden = false;
        return;
      }
      emit({ step: "SUBMIT_MFA", institution: INSTITUTION });
      busy(form, true);
      api("mfa", { session: sessionId, responses: responses }).then(handle, failed);
    });
    show([el("h1", { text: t.mfaTitle }), form]);
  }

  function handle(result) {
    var data = result.data || {};
    if (data.session) sessionId = data.session;
    if (result.status === 401) return refuseToken(t.tokenRefused);
    if (result.status === 403 && data.flinksCode === "MAXIMUM_RETRY_REACHED") {
      emit({ step: "MAXIMUM_RETRY_REACHED", institution: INSTITUTION });
      return message("maximum-retry", "error", t.maximumRetry);
    }
    if (result.status !== 200) return failed();
    if (data.outcome === "mfa") return showMfa(data, Boolean(data.error));
    if (data.outcome === "connected") return connected(data);
    if (data.outcome === "error") return showError(data);
    return failed();
  }

  function failed() {
    message("fatal", "error", t.failed);
  }

  function showError(data) {
    var code = data.flinksCode || "AGGREGATION_ERROR";
    // One message in both of Flinks' shapes: the step event and the API (FlinksCode) event.
    emit({ step: code, flinksCode: code, requestId: data.requestId || null, institution: INSTITUTION });
    if (data.maximumRetryReached) {
      emit({ step: "MAXIMUM_RETRY_REACHED", institution: INSTITUTION });
      return message("maximum-retry", "error", t.maximumRetry);
    }
    var retry = el("button", { id: "retry", type: "button", text: t.retry });
    retry.addEventListener("click", function () { showCredentials(true); });
    show([
      el("p", { id: "error", className: "error", role: "alert", "data-code": code,
        text: t.errors[code] || data.message || t.failed }),
      retry
    ]);
  }

  function connected(data) {
    if (!cfg.accountSelectorEnable) return finish(data, null);
    var accounts = data.accounts.filter(function (account) {
      return !cfg.accountSelectorCurrency || account.currency === cfg.accountSelectorCurrency;
    });
    emit({
      step: "COMPONENT_LOAD_ACCOUNT_SELECTION", institution: INSTITUTION,
      totalAccounts: data.accounts.length, displayedAccounts: accounts.length
    });
    var type = cfg.accountSelectorMultiple ? "checkbox" : "radio";
    var choices = accounts.map(function (account, index) {
      var input = el("input", { id: "account-" + account.id, type: type, name: "account", value: account.id });
      if (index === 0 && !cfg.accountSelectorMultiple) input.checked = true;
      return el("label", { className: "account", "for": "account-" + account.id }, [
        input,
        el("span", { text: account.title + " " + account.number + " (" + account.currency + ")" })
      ]);
    });
    var form = el("form", { id: "accounts-form", novalidate: "" }, choices.concat([
      el("button", { id: "submit-accounts", type: "submit", text: t.submit })
    ]));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var ids = Array.prototype.filter.call(form.querySelectorAll("input"), function (input) {
        return input.checked;
      }).map(function (input) { return input.value; });
      if (!ids.length) return;
      emit({ step: "ACCOUNT_SELECTED", institution: INSTITUTION, accountId: ids.join(",") });
      finish(data, ids);
    });
    show([
      el("h1", { text: cfg.accountSelectorMultiple ? t.accountsTitleMultiple : t.accountsTitle }),
      form
    ]);
  }

  function redirectTarget(params) {
    if (!cfg.redirectUrl) return null;
    var url;
    try { url = new URL(cfg.redirectUrl); } catch (e) { return null; }
    if (BLOCKED_SCHEMES.indexOf(url.protocol.toLowerCase()) !== -1) return null;
    params.forEach(function (pair) { url.searchParams.append(pair[0], pair[1]); });
    return url.toString();
  }

  // The REDIRECT message in the shape the redirect_message switch picks: "url_only" as Flinks
  // documents it (the loginId only inside url), "top_level" as newer pages show it, or "both".
  function redirectEvent(data, url, params) {
    if (cfg.redirectMessage === "url_only") {
      // Flinks requires a redirectUrl; without a usable one the url still carries the loginId.
      var query = params.map(function (pair) {
        return encodeURIComponent(pair[0]) + "=" + encodeURIComponent(pair[1]);
      }).join("&");
      return {
        step: "REDIRECT", institution: data.institution,
        url: url || window.location.origin + "/v2/redirect?" + query
      };
    }
    var event = {
      step: "REDIRECT", institution: data.institution, loginId: data.loginId,
      requestId: data.requestId
    };
    if (url && cfg.redirectMessage === "both") event.url = url;
    if (cfg.tag) event.tag = cfg.tag;
    var accountId = params.filter(function (pair) { return pair[0] === "accountId"; });
    if (accountId.length) event.accountId = accountId[0][1];
    return event;
  }

  function finish(data, accountIds) {
    var params = [["loginId", data.loginId], ["institution", data.institution]];
    if (cfg.tag) params.push(["tag", cfg.tag]);
    if (accountIds) params.push(["accountId", accountIds.join(",")]);
    var url = redirectTarget(params);
    emit(redirectEvent(data, url, params));
    message("success", "success", t.connected);
    if (!url || cfg.jsRedirect) return;
    // Navigate a moment after REDIRECT is posted: the parent's message event is queued, and a
    // navigation started at once can unload the parent before its listener runs.
    window.setTimeout(function () { navigate(url); }, REDIRECT_DELAY_MS);
  }

  function navigate(url) {
    if (cfg.innerRedirect) {
      window.location.assign(url);
      return;
    }
    try {
      // Cross-origin frames may set top's href (after a user gesture) but not call assign().
      window.top.location.href = url;
    } catch (e) {
      window.location.assign(url);
    }
  }

  start();
})();
