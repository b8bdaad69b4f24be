'use strict';
// Servant and proxy code for Hello.tars, written in the shape tars2node generates (tars2node
// is a C++ tool, not an npm package): the server side is an Imp class whose onDispatch decodes
// the JCE arguments and whose current.sendResponse encodes the answer; the client side is a
// Proxy class whose methods encode the arguments and call the library's tars_invoke. Framing,
// RequestPacket/ResponsePacket encoding, request ids, connections and timeouts are all
// @tars/rpc's; the JCE encoding is @tars/stream's. Only the TARS protocol (iVersion 1) is
// implemented, as the peers use nothing else.

const TarsStream = require('@tars/stream');
const TarsError = require('@tars/rpc').error;

const Test = {};
module.exports.Test = Test;

// ---- server side -----------------------------------------------------------------------------

Test.HelloImp = function () {
  this._name = undefined;
  this._worker = undefined;
};

Test.HelloImp.prototype.initialize = function () {};

Test.HelloImp.prototype.onDispatch = function (current, FuncName, BinBuffer) {
  const answerString = function (ret) {
    const os = new TarsStream.TarsOutputStream();
    os.writeString(0, ret);
    current.doResponse(os.getBinBuffer());
  };
  switch (FuncName) {
    case 'tars_ping': {
      current.sendResponse = function (ret) {
        const os = new TarsStream.TarsOutputStream();
        os.writeInt32(0, ret);
        current.doResponse(os.getBinBuffer());
      };
      current.sendResponse(0);
      return TarsError.SUCCESS;
    }
    case 'echo': {
      const is = new TarsStream.TarsInputStream(BinBuffer);
      const s = is.readString(1, true);
      current.sendResponse = answerString;
      this.echo(current, s);
      return TarsError.SUCCESS;
    }
    case 'slow': {
      const is = new TarsStream.TarsInputStream(BinBuffer);
      const ms = is.readInt32(1, true);
      current.sendResponse = answerString;
      this.slow(current, ms);
      return TarsError.SUCCESS;
    }
  }
  return TarsError.SERVER.FUNC_NOT_FOUND;
};

Test.HelloImp.prototype.echo = function () {
  throw new Error('echo not implemented');
};

Test.HelloImp.prototype.slow = function () {
  throw new Error('slow not implemented');
};

// ---- client side -----------------------------------------------------------------------------

Test.HelloProxy = function () {
  this._name = undefined;
  this._worker = undefined;
};

Test.HelloProxy.prototype.setTimeout = function (iTimeout) {
  this._worker.timeout = iTimeout;
};

Test.HelloProxy.prototype.getTimeout = function () {
  return this._worker.timeout;
};

// Decodes a string return value (tag 0) from a successful ResponsePacket.
function decodeString(data) {
  try {
    const is = new TarsStream.TarsInputStream(data.response.sBuffer);
    const response = { arguments: {} };
    response.costtime = data.request.costtime;
    response.return = is.readString(0, true, TarsStream.String);
    response.packet = data.response; // the ResponsePacket (iRequestId, iRet, context, ...)
    return { request: data.request, response };
  } catch (e) {
    const response = { costtime: data.request.costtime, error: { code: TarsError.CLIENT.DECODE_ERROR, message: e.message } };
    throw { request: data.request, response };
  }
}

// As generated, but the ResponsePacket of an error answer is kept (response.packet) so the
// caller can tell an answer from the wire from a local failure (timeout, no connection).
function rethrow(data) {
  const response = { costtime: data.request.costtime, error: data.error, packet: data.response };
  throw { request: data.request, response };
}

Test.HelloProxy.prototype.echo = function (s) {
  const os = new TarsStream.TarsOutputStream();
  os.writeString(1, s);
  const property = arguments.length > 1 ? arguments[arguments.length - 1] : undefined;
  return this._worker.tars_invoke('echo', os.getBinBuffer(), property).then(decodeString, rethrow);
};

Test.HelloProxy.prototype.slow = function (ms) {
  const os = new TarsStream.TarsOutputStream();
  os.writeInt32(1, ms);
  const property = arguments.length > 1 ? arguments[arguments.length - 1] : undefined;
  return this._worker.tars_invoke('slow', os.getBinBuffer(), property).then(decodeString, rethrow);
};
