namespace GemmaGen.Tests.Infrastructure;

/// <summary>
/// Marks a test class whose results depend on the SIMD instruction sets the JIT may use (the kernels choose
/// Vector512 / Vector256 / Vector128 / scalar code at run time). Besides the normal run on the full ISA, every
/// test of such a class runs again in child processes with AVX-512 and with AVX2 disabled: see
/// <see cref="IsaRunner"/> and <see cref="IsaTests"/>. The class needs a constructor the runner can call: a
/// parameterless one, or one that takes class fixtures and an <c>ITestOutputHelper</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class IsaSensitiveAttribute : Attribute;
